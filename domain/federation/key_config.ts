/**
 * Parsers for the key configuration: `TESSERA_OLD_SIGNING_KEYS` (our retired keys, still
 * published in `old_verify_keys` and still accepted on our own old events) and
 * `TESSERA_TRUSTED_KEY_SERVERS` (notaries asked for a server's keys when it cannot be reached).
 * They return `{value}` or a one-line `{problem}`, as config.ts's own parsers do.
 */
import { z } from "zod";
import { decodeBase64 } from "../protocol/base64.ts";
import { parseServerName } from "../protocol/identifiers.ts";

/** One of our retired signing keys: only its public half, and when it stopped being used. */
export interface OldSigningKey {
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  /** Events and requests signed before this (ms since the epoch) still verify with it. */
  readonly expiredTs: number;
}

/** A notary server and, optionally, its pinned public keys (key ID -> key). */
export interface TrustedKeyServer {
  readonly serverName: string;
  /** When given, the notary's signature must verify with one of these, never a fetched key. */
  readonly verifyKeys?: Readonly<Record<string, Uint8Array>>;
}

type Parsed<T> = { value: T } | { problem: string };

/** The spec's key ID grammar for ed25519, the one algorithm servers sign with. */
export const ED25519_KEY_ID = /^ed25519:[A-Za-z0-9_]+$/;

/** Decode an unpadded base64 Ed25519 public key; undefined unless it is 32 bytes. */
export function decodePublicKey(text: string): Uint8Array | undefined {
  try {
    const bytes = decodeBase64(text);
    return bytes.length === 32 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

const oldKeysSchema = z.record(
  z.string(),
  z.object({ key: z.string(), expired_ts: z.number().int().nonnegative() }).strict(),
);

/**
 * `TESSERA_OLD_SIGNING_KEYS`: a JSON object shaped like the key document's `old_verify_keys`,
 * `{"ed25519:abc": {"key": "<unpadded base64 public key>", "expired_ts": 1700000000000}}`.
 * Public keys only: a retired key never signs again, so its seed need not be kept.
 */
export function parseOldSigningKeys(raw: string): Parsed<OldSigningKey[]> {
  const expected =
    'expected JSON like {"ed25519:old": {"key": "<base64 public key>", "expired_ts": <ms>}}';
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { problem: `${expected}, got text that is not JSON` };
  }
  const parsed = oldKeysSchema.safeParse(json);
  if (!parsed.success) return { problem: expected };
  const keys: OldSigningKey[] = [];
  for (const [keyId, { key, expired_ts }] of Object.entries(parsed.data)) {
    if (!ED25519_KEY_ID.test(keyId)) {
      return { problem: `${expected}; ${JSON.stringify(keyId)} is not an ed25519 key ID` };
    }
    const publicKey = decodePublicKey(key);
    if (publicKey === undefined) {
      return { problem: `${expected}; the key of ${keyId} is not 32 bytes of base64` };
    }
    keys.push(Object.freeze({ keyId, publicKey, expiredTs: expired_ts }));
  }
  return { value: keys };
}

/**
 * `TESSERA_TRUSTED_KEY_SERVERS`: comma-separated notaries, each a server name optionally
 * followed by space-separated pinned keys `ed25519:id=<base64 public key>`, e.g.
 * `matrix.org ed25519:auto=Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw`.
 */
export function parseTrustedKeyServers(raw: string): Parsed<TrustedKeyServer[]> {
  const servers: TrustedKeyServer[] = [];
  for (const entry of raw.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    const [serverName, ...pins] = entry.split(/\s+/);
    if (!parseServerName(serverName).ok) {
      return { problem: `expected a server name, got ${JSON.stringify(serverName)}` };
    }
    if (servers.some((s) => s.serverName === serverName)) {
      return { problem: `${serverName} is listed twice` };
    }
    const verifyKeys: Record<string, Uint8Array> = {};
    for (const pin of pins) {
      const eq = pin.indexOf("=");
      const keyId = pin.slice(0, eq);
      const publicKey = eq > 0 ? decodePublicKey(pin.slice(eq + 1)) : undefined;
      if (!ED25519_KEY_ID.test(keyId) || publicKey === undefined) {
        return {
          problem: `expected "ed25519:id=<32-byte base64 key>" after ${serverName}, got ${
            JSON.stringify(pin.slice(0, 80))
          }`,
        };
      }
      verifyKeys[keyId] = publicKey;
    }
    servers.push(
      Object.freeze({
        serverName,
        ...(pins.length > 0 ? { verifyKeys: Object.freeze(verifyKeys) } : {}),
      }),
    );
  }
  if (servers.length === 0) return { problem: "expected at least one server name" };
  return { value: servers };
}
