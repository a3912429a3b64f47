/**
 * Server key documents (`/_matrix/key/v2/server`, and the entries of a notary's answer):
 * checking one a server sent about itself, and when a key it lists may be used.
 */
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { verifyJsonSignature } from "../protocol/signing.ts";
import type { StoredServerKey } from "../ports/server_key_store.ts";
import { decodePublicKey, ED25519_KEY_ID } from "./key_config.ts";

/** The spec: use the lesser of `valid_until_ts` and 7 days after fetching. */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000;

/** Real documents are well under 2 KiB; the cap keeps one record inside a KV value. */
export const MAX_KEY_DOCUMENT_BYTES = 16 * 1024;

/** A cap on keys per document (current and old together), for the same reason. */
export const MAX_KEYS_PER_DOCUMENT = 50;

/** A key document that verified: its keys, and the document with only its server's signatures. */
export interface VerifiedKeyDocument {
  readonly serverName: string;
  readonly validUntilTs: number;
  readonly verifyKeys: ReadonlyMap<string, Uint8Array>;
  readonly oldVerifyKeys: ReadonlyMap<string, { publicKey: Uint8Array; expiredTs: number }>;
  readonly document: JsonObject;
}

type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Check a key document that claims to come from `serverName`: its shape, its `server_name`, and
 * its self-signature. At least one signature must be by a key in `verify_keys`, and every such
 * signature must verify (a forged document cannot borrow one good signature). Signatures by
 * other servers (a notary's) are left for the caller and dropped from `document`.
 */
export async function verifyKeyDocument(
  body: unknown,
  serverName: string,
): Promise<Checked<VerifiedKeyDocument>> {
  if (!isJsonObject(body)) return { ok: false, reason: "the key document is not an object" };
  if (body.server_name !== serverName) {
    return { ok: false, reason: `the key document is not about ${serverName}` };
  }
  const validUntilTs = body.valid_until_ts;
  if (typeof validUntilTs !== "number" || !Number.isSafeInteger(validUntilTs)) {
    return { ok: false, reason: "valid_until_ts is not an integer" };
  }
  let size: number;
  try {
    size = canonicalJsonBytes(body).length;
  } catch {
    return { ok: false, reason: "the key document has no canonical JSON form" };
  }
  if (size > MAX_KEY_DOCUMENT_BYTES) return { ok: false, reason: "the key document is too large" };
  const verifyKeys = new Map<string, Uint8Array>();
  const oldVerifyKeys = new Map<string, { publicKey: Uint8Array; expiredTs: number }>();
  if (!isJsonObject(body.verify_keys)) return { ok: false, reason: "verify_keys is not an object" };
  for (const [keyId, entry] of Object.entries(body.verify_keys)) {
    // Other algorithms may appear one day; only ed25519 is defined, so the rest is skipped.
    if (!keyId.startsWith("ed25519:")) continue;
    const publicKey = ED25519_KEY_ID.test(keyId) && isJsonObject(entry) &&
        typeof entry.key === "string"
      ? decodePublicKey(entry.key)
      : undefined;
    if (publicKey === undefined) return { ok: false, reason: `verify key ${keyId} is malformed` };
    verifyKeys.set(keyId, publicKey);
  }
  if (body.old_verify_keys !== undefined) {
    if (!isJsonObject(body.old_verify_keys)) {
      return { ok: false, reason: "old_verify_keys is not an object" };
    }
    for (const [keyId, entry] of Object.entries(body.old_verify_keys)) {
      if (!keyId.startsWith("ed25519:") || verifyKeys.has(keyId)) continue;
      const publicKey = ED25519_KEY_ID.test(keyId) && isJsonObject(entry) &&
          typeof entry.key === "string"
        ? decodePublicKey(entry.key)
        : undefined;
      const expiredTs = isJsonObject(entry) ? entry.expired_ts : undefined;
      // A malformed retired key cannot verify anything; it need not spoil the current ones.
      if (
        publicKey === undefined || typeof expiredTs !== "number" ||
        !Number.isSafeInteger(expiredTs)
      ) continue;
      oldVerifyKeys.set(keyId, { publicKey, expiredTs });
    }
  }
  if (verifyKeys.size + oldVerifyKeys.size > MAX_KEYS_PER_DOCUMENT) {
    return { ok: false, reason: "the key document lists too many keys" };
  }
  const signatures = isJsonObject(body.signatures) ? body.signatures[serverName] : undefined;
  if (!isJsonObject(signatures)) {
    return { ok: false, reason: `the key document is not signed by ${serverName}` };
  }
  let verified = 0;
  for (const keyId of Object.keys(signatures)) {
    const publicKey = verifyKeys.get(keyId);
    if (publicKey === undefined) continue;
    if (!(await verifyJsonSignature(body, serverName, keyId, publicKey))) {
      return { ok: false, reason: `the self-signature with ${keyId} does not verify` };
    }
    verified++;
  }
  if (verified === 0) {
    return { ok: false, reason: `the key document is not signed by any of its own keys` };
  }
  const document: JsonObject = { ...body, signatures: { [serverName]: signatures } };
  return {
    ok: true,
    value: { serverName, validUntilTs, verifyKeys, oldVerifyKeys, document },
  };
}

/** The records a verified document gives the key store, one per key it lists. */
export function storedKeysOf(doc: VerifiedKeyDocument, fetchedTs: number): StoredServerKey[] {
  const base = {
    serverName: doc.serverName,
    validUntilTs: doc.validUntilTs,
    fetchedTs,
    document: doc.document,
  };
  return [
    ...[...doc.verifyKeys].map(([keyId, publicKey]) => ({ ...base, keyId, publicKey })),
    ...[...doc.oldVerifyKeys].map(([keyId, { publicKey, expiredTs }]) => ({
      ...base,
      keyId,
      publicKey,
      expiredTs,
    })),
  ];
}

/**
 * Whether a cached key verifies what was signed at `atTs`: an old key up to its `expired_ts`, a
 * current one up to its `valid_until_ts` but never more than 7 days after we fetched it.
 */
export function keyValidAt(key: StoredServerKey, atTs: number): boolean {
  if (key.expiredTs !== undefined) return atTs <= key.expiredTs;
  return atTs <= Math.min(key.validUntilTs, key.fetchedTs + MAX_KEY_VALIDITY_MS);
}
