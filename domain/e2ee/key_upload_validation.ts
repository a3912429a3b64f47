/**
 * Checks on what `/keys/upload` carries (spec: "Key management API", "Key algorithms"): device
 * keys must be the session's own and have the spec's shape; one-time and fallback
 * keys must be `<algorithm>:<key_id>` names with a key string or signed key object. Every size
 * and count is bounded, so storage limits are never what refuses an upload.
 */
import { canonicalJson, canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { badJson, invalidParam, MatrixError } from "../errors.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { UploadedKey } from "../ports/device_key_store.ts";

/** Longest key algorithm name (`signed_curve25519`, `m.megolm.v1.aes-sha2`, ...). */
export const MAX_ALGORITHM_LENGTH = 64;
/** Longest one-time or fallback key ID (olm and vodozemac use 6 to 11 base64 characters). */
export const MAX_KEY_ID_LENGTH = 64;
/** Largest one-time or fallback key, as canonical JSON (a signed curve25519 key is ~200 bytes). */
export const MAX_ONE_TIME_KEY_BYTES = 4096;
/** Most one-time keys in one upload (clients upload 50 at a time). */
export const MAX_ONE_TIME_KEYS_PER_UPLOAD = 1000;
/** Most fallback keys in one upload: one per algorithm. */
export const MAX_FALLBACK_KEYS_PER_UPLOAD = 16;
/** Largest device keys object, as canonical JSON with its signatures. */
export const MAX_DEVICE_KEYS_BYTES = 32_768;
/** Most identity keys and most algorithms a device keys object may list. */
export const MAX_DEVICE_KEY_ENTRIES = 64;

// Printable ASCII; algorithm names cannot contain the ':' that ends them.
const ALGORITHM = /^[\x21-\x39\x3B-\x7E]+$/;
const KEY_ID = /^[\x21-\x7E]+$/;

/** True for a valid key algorithm name. */
export function isValidAlgorithm(algorithm: string): boolean {
  return algorithm.length <= MAX_ALGORITHM_LENGTH && ALGORITHM.test(algorithm);
}

/**
 * Check uploaded device keys for `userId`'s device `deviceId` and return them as stored: the
 * signed fields and signatures, without `unsigned` (the server fills that in on queries).
 *
 * The self-signature is not verified, as Synapse does not: every client verifies a device's
 * signatures itself before trusting its keys (the spec requires it), so a server check adds no
 * protection, and refusing keys the server cannot verify (placeholder keys, algorithms it does
 * not know) would only break clients. What is checked is what the server itself relies on: the
 * keys belong to the uploading session, and the object has the spec's shape and a bounded size.
 */
export function checkDeviceKeys(
  value: unknown,
  userId: string,
  deviceId: string,
): JsonObject {
  if (!isJsonObject(value)) throw badJson("device_keys must be an object");
  const { unsigned: _unsigned, ...deviceKeys } = value;
  if (typeof deviceKeys.user_id !== "string" || typeof deviceKeys.device_id !== "string") {
    throw badJson("device_keys.user_id and device_keys.device_id must be strings");
  }
  if (deviceKeys.user_id !== userId) {
    throw invalidParam("device_keys.user_id does not match the session's user");
  }
  if (deviceKeys.device_id !== deviceId) {
    throw invalidParam("device_keys.device_id does not match the session's device");
  }
  const { algorithms, keys, signatures } = deviceKeys;
  if (
    !Array.isArray(algorithms) || algorithms.length > MAX_DEVICE_KEY_ENTRIES ||
    !algorithms.every((a) => typeof a === "string" && isValidAlgorithm(a))
  ) {
    throw badJson(
      `device_keys.algorithms must be a list of at most ${MAX_DEVICE_KEY_ENTRIES} algorithm names`,
    );
  }
  if (
    !isJsonObject(keys) || Object.keys(keys).length > MAX_DEVICE_KEY_ENTRIES ||
    !Object.entries(keys).every(([id, k]) => typeof k === "string" && isKeyName(id))
  ) {
    throw badJson("device_keys.keys must map <algorithm>:<key_id> names to key strings");
  }
  checkSignatures(signatures, "device_keys.signatures", badJson);
  if (canonicalJsonBytes(deviceKeys).byteLength > MAX_DEVICE_KEYS_BYTES) {
    throw badJson(`device_keys is over ${MAX_DEVICE_KEYS_BYTES} bytes`);
  }
  return deviceKeys;
}

/** True for an `<algorithm>:<key_id>` name. */
function isKeyName(name: string): boolean {
  const colon = name.indexOf(":");
  if (colon < 0) return false;
  const keyId = name.slice(colon + 1);
  return isValidAlgorithm(name.slice(0, colon)) && keyId.length > 0 &&
    keyId.length <= MAX_KEY_ID_LENGTH && KEY_ID.test(keyId);
}

/** A `signatures` object: user ID -> key ID -> signature string. */
function checkSignatures(
  value: JsonValue | undefined,
  where: string,
  refuse: (message: string) => MatrixError = invalidParam,
): void {
  if (
    !isJsonObject(value) ||
    !Object.values(value).every((byKey) =>
      isJsonObject(byKey) && Object.values(byKey).every((s) => typeof s === "string")
    )
  ) {
    throw refuse(`${where} must map user IDs to key IDs to signatures`);
  }
}

/**
 * Parse a `{"<algorithm>:<key_id>": key}` map of one-time or fallback keys (`field` names it in
 * errors). Keys are strings or `{key, signatures, ...}` objects.
 */
export function parseKeyMap(value: unknown, field: string, maxKeys: number): UploadedKey[] {
  if (!isJsonObject(value)) throw invalidParam(`${field} must be an object`);
  const entries = Object.entries(value);
  if (entries.length > maxKeys) throw invalidParam(`${field} holds more than ${maxKeys} keys`);
  return entries.map(([name, key]) => {
    const colon = name.indexOf(":");
    const algorithm = name.slice(0, colon);
    const keyId = name.slice(colon + 1);
    if (colon < 0 || !isValidAlgorithm(algorithm)) {
      throw invalidParam(`${field}: ${JSON.stringify(name)} is not <algorithm>:<key_id>`);
    }
    if (keyId.length === 0 || keyId.length > MAX_KEY_ID_LENGTH || !KEY_ID.test(keyId)) {
      throw invalidParam(
        `${field}: key ID of ${
          JSON.stringify(name)
        } must be 1-${MAX_KEY_ID_LENGTH} printable ASCII characters`,
      );
    }
    checkKey(key, `${field}.${name}`);
    return { algorithm, keyId, key };
  });
}

function checkKey(key: JsonValue, where: string): void {
  if (typeof key !== "string") {
    if (!isJsonObject(key) || typeof key.key !== "string") {
      throw invalidParam(`${where} must be a key string or an object with a 'key' string`);
    }
    checkSignatures(key.signatures, `${where}.signatures`);
  }
  if (new TextEncoder().encode(canonicalJson(key)).byteLength > MAX_ONE_TIME_KEY_BYTES) {
    throw invalidParam(`${where} is over ${MAX_ONE_TIME_KEY_BYTES} bytes`);
  }
}

/** Fallback keys: at most one per algorithm. */
export function parseFallbackKeys(value: unknown, field: string): UploadedKey[] {
  const keys = parseKeyMap(value, field, MAX_FALLBACK_KEYS_PER_UPLOAD);
  const algorithms = new Set<string>();
  for (const k of keys) {
    if (algorithms.has(k.algorithm)) {
      throw invalidParam(`${field} holds more than one ${k.algorithm} key`);
    }
    algorithms.add(k.algorithm);
  }
  return keys;
}
