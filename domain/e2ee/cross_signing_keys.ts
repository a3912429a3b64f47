/**
 * Pure helpers over cross-signing key objects (spec: "Cross-signing"): shape checks, the public
 * key inside a key object, content comparison without signatures, and signature checks by a
 * user's Ed25519 key over canonical JSON.
 */
import { badJson, invalidParam, MatrixError } from "../errors.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { verifyJsonSignature } from "../protocol/signing.ts";
import { tryDecodeBase64 } from "../protocol/base64.ts";
import type { CrossSigningUsage } from "../ports/cross_signing_store.ts";

/** Largest canonical size of one uploaded key object, signatures included. */
export const MAX_CROSS_SIGNING_KEY_BYTES = 16_384;

// An Ed25519 public key is 32 bytes: 43 characters of unpadded standard base64.
const PUBLIC_KEY = /^[A-Za-z0-9+/]{43}$/;

/** 400 M_INVALID_SIGNATURE. */
export const invalidSignature = (message: string) =>
  new MatrixError("M_INVALID_SIGNATURE", 400, message);

/** True for an unpadded base64 Ed25519 public key. */
export function isEd25519PublicKey(text: string): boolean {
  return PUBLIC_KEY.test(text) && tryDecodeBase64(text)?.length === 32;
}

/** The public key of a well-formed key object (`keys` holds one `ed25519:<key>` entry). */
export function publicKeyOf(key: JsonObject): string {
  const keys = key.keys as JsonObject;
  return Object.keys(keys)[0].slice("ed25519:".length);
}

/** The public key of a stored key, or null when there is none. */
export function publicKeyOrNull(key: JsonObject | undefined): string | null {
  return key === undefined ? null : publicKeyOf(key);
}

/**
 * Check an uploaded cross-signing key's shape: `user_id` is `userId`, `usage` is exactly
 * `[usage]`, `keys` holds exactly one `ed25519:<unpadded base64 key>` naming its own value,
 * `signatures` (if any) maps users to key IDs to strings. Throws 400 M_INVALID_PARAM /
 * M_BAD_JSON; returns the public key.
 */
export function checkCrossSigningKeyShape(
  key: unknown,
  userId: string,
  usage: CrossSigningUsage,
): string {
  const what = `${usage} key`;
  if (!isJsonObject(key)) throw badJson(`The ${what} must be an object`);
  if (key.user_id !== userId) {
    throw invalidParam(`The ${what}'s user_id must be the uploading user ${userId}`);
  }
  const usages = key.usage;
  if (!Array.isArray(usages) || usages.length !== 1 || usages[0] !== usage) {
    throw invalidParam(`The ${what}'s usage must be ["${usage}"]`);
  }
  const keys = key.keys;
  if (!isJsonObject(keys) || Object.keys(keys).length !== 1) {
    throw invalidParam(`The ${what} must hold exactly one public key`);
  }
  const [keyId, value] = Object.entries(keys)[0];
  const publicKey = keyId.startsWith("ed25519:") ? keyId.slice("ed25519:".length) : "";
  if (!isEd25519PublicKey(publicKey) || value !== publicKey) {
    throw invalidParam(
      `The ${what} must be "ed25519:<unpadded base64 public key>" mapping to that key`,
    );
  }
  checkSignaturesShape(key.signatures, what);
  if (new TextEncoder().encode(canonicalJson(key)).length > MAX_CROSS_SIGNING_KEY_BYTES) {
    throw invalidParam(`The ${what} is over ${MAX_CROSS_SIGNING_KEY_BYTES} bytes`);
  }
  return publicKey;
}

/** `signatures`, when present, must be `{userId: {keyId: "base64"}}`. */
export function checkSignaturesShape(signatures: unknown, what: string): void {
  if (signatures === undefined) return;
  if (!isJsonObject(signatures)) throw badJson(`The ${what}'s signatures must be an object`);
  for (const byKey of Object.values(signatures)) {
    if (!isJsonObject(byKey) || Object.values(byKey).some((s) => typeof s !== "string")) {
      throw badJson(`The ${what}'s signatures must map key IDs to strings`);
    }
  }
}

/** The signed content of a key object: everything but `signatures` and `unsigned`. */
export function signedContent(key: JsonObject): string {
  const { signatures: _s, unsigned: _u, ...rest } = key;
  return canonicalJson(rest);
}

/** True when two key objects are the same, `unsigned` aside (signatures count). */
export function sameKeyObject(a: JsonObject, b: JsonObject): boolean {
  const { unsigned: _a, ...restA } = a;
  const { unsigned: _b, ...restB } = b;
  return canonicalJson(restA) === canonicalJson(restB);
}

/** `signatures[userId][keyId]` of an object, if it is a string. */
export function signatureOf(obj: JsonObject, userId: string, keyId: string): string | undefined {
  const signatures = obj.signatures;
  if (!isJsonObject(signatures)) return undefined;
  const byUser = signatures[userId];
  if (!isJsonObject(byUser)) return undefined;
  const value = byUser[keyId];
  return typeof value === "string" ? value : undefined;
}

/** Check `userId`'s signature with `ed25519:<publicKey>` on `obj`, or with `keyId` if given. */
export async function hasValidSignature(
  obj: JsonObject,
  userId: string,
  publicKey: string,
  keyId = `ed25519:${publicKey}`,
): Promise<boolean> {
  const bytes = tryDecodeBase64(publicKey);
  if (bytes === undefined || bytes.length !== 32) return false;
  return await verifyJsonSignature(obj, userId, keyId, bytes);
}

/** A copy of `obj` with uploaded signatures merged into its `signatures`. */
export function withSignatures(
  obj: JsonObject,
  extra: readonly { signerUserId: string; signerKeyId: string; signature: string }[],
): JsonObject {
  if (extra.length === 0) return obj;
  const signatures: Record<string, JsonObject> = {};
  if (isJsonObject(obj.signatures)) {
    for (const [user, keys] of Object.entries(obj.signatures)) {
      if (isJsonObject(keys)) signatures[user] = { ...keys };
    }
  }
  for (const s of extra) {
    signatures[s.signerUserId] = { ...signatures[s.signerUserId], [s.signerKeyId]: s.signature };
  }
  return { ...obj, signatures };
}
