/**
 * Ed25519 signatures over JSON objects (spec appendix "Signing JSON"). Signing and async
 * verification go through WebCrypto, which is several times faster than pure-JS Ed25519 here;
 * @noble/ed25519 backs the one synchronous verifier that the auth rules need.
 */
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { decodeBase64, encodeBase64Unpadded } from "./base64.ts";
import { canonicalJsonBytes, type CanonicalJsonOptions } from "./canonical_json.ts";
import { isJsonObject } from "./json.ts";

// noble's synchronous API needs a SHA-512 it can call synchronously.
ed.hashes.sha512 = sha512;

/** A server's Ed25519 signing key: its `ed25519:<version>` ID, public half and a signer. */
export interface SigningKey {
  keyId: string;
  publicKey: Uint8Array;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Signatures as they sit in a signed object: server name, then key ID, then base64. */
export type Signatures = Record<string, Record<string, string>>;

// The spec's key version grammar is [a-zA-Z0-9_]; only ed25519 is a defined algorithm.
const KEY_ID = /^ed25519:[A-Za-z0-9_]+$/;

// DER header of a PKCS#8 OneAsymmetricKey holding an Ed25519 (OID 1.3.101.112) private key;
// the 32-byte seed follows it. WebCrypto imports Ed25519 private keys only in PKCS#8 or JWK.
const PKCS8_ED25519_PREFIX = Uint8Array.fromHex("302e020100300506032b657004220420");

/** Build a signing key from a 32-byte Ed25519 seed; `keyId` must look like `ed25519:abc_1`. */
export async function signingKeyFromSeed(seed: Uint8Array, keyId: string): Promise<SigningKey> {
  if (seed.length !== 32) throw new RangeError(`Ed25519 seed must be 32 bytes, got ${seed.length}`);
  if (!KEY_ID.test(keyId)) throw new RangeError(`Invalid signing key ID ${JSON.stringify(keyId)}`);
  const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32);
  pkcs8.set(PKCS8_ED25519_PREFIX);
  pkcs8.set(seed, PKCS8_ED25519_PREFIX.length);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", false, ["sign"]);
  // The public key comes from WebCrypto too: noble's getPublicKey would build a base-point table
  // (about 10 MiB resident) that only federation verification otherwise needs.
  const exportable = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", true, ["sign"]);
  pkcs8.fill(0);
  const { x } = await crypto.subtle.exportKey("jwk", exportable);
  return {
    keyId,
    publicKey: decodeBase64(x!),
    async sign(data: Uint8Array): Promise<Uint8Array> {
      return new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, ownBuffer(data)));
    },
  };
}

/** A fresh random 32-byte Ed25519 seed for a new server key. */
export function generateSigningSeed(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** The bytes a JSON signature covers: canonical JSON without `signatures` and `unsigned`. */
export function signingBytes(obj: object, options?: CanonicalJsonOptions): Uint8Array {
  const { signatures: _s, unsigned: _u, ...rest } = obj as Record<string, unknown>;
  return canonicalJsonBytes(rest, options);
}

/**
 * Sign a JSON object as `serverName` and return a new object with the signature added under
 * `signatures[serverName][keyId]`; earlier signatures and `unsigned` are kept.
 */
export async function signJson<T extends object>(
  obj: T,
  serverName: string,
  key: SigningKey,
  options?: CanonicalJsonOptions,
): Promise<T & { signatures: Signatures }> {
  const signature = await key.sign(signingBytes(obj, options));
  const existing = (obj as { signatures?: unknown }).signatures;
  const signatures: Signatures = {};
  if (isJsonObject(existing)) {
    for (const [server, keys] of Object.entries(existing)) {
      if (isJsonObject(keys)) signatures[server] = { ...keys } as Record<string, string>;
    }
  }
  signatures[serverName] = {
    ...signatures[serverName],
    [key.keyId]: encodeBase64Unpadded(signature),
  };
  return { ...obj, signatures };
}

/**
 * Check `serverName`'s signature with `keyId` on a JSON object. False when the signature is
 * absent, not base64, wrong, or the object has no canonical form.
 */
export async function verifyJsonSignature(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array,
  options?: CanonicalJsonOptions,
): Promise<boolean> {
  const prepared = prepareVerification(obj, serverName, keyId, options);
  if (prepared === undefined) return false;
  return await verifyEd25519(publicKey, prepared.message, prepared.signature);
}

/** The synchronous twin of `verifyJsonSignature`, for code that cannot await (auth rules). */
export function verifyJsonSignatureSync(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array,
  options?: CanonicalJsonOptions,
): boolean {
  const prepared = prepareVerification(obj, serverName, keyId, options);
  if (prepared === undefined) return false;
  return verifyEd25519Sync(publicKey, prepared.message, prepared.signature);
}

function prepareVerification(
  obj: object,
  serverName: string,
  keyId: string,
  options?: CanonicalJsonOptions,
): { message: Uint8Array; signature: Uint8Array } | undefined {
  const signatures = (obj as { signatures?: unknown }).signatures;
  if (!isJsonObject(signatures)) return undefined;
  const byServer = signatures[serverName];
  if (!isJsonObject(byServer)) return undefined;
  const encoded = byServer[keyId];
  if (typeof encoded !== "string") return undefined;
  try {
    return { message: signingBytes(obj, options), signature: decodeBase64(encoded) };
  } catch {
    return undefined;
  }
}

// Importing a raw public key costs about as much as a verification; peers reuse few keys.
const verifyKeyCache = new Map<string, Promise<CryptoKey>>();
const VERIFY_KEY_CACHE_LIMIT = 1024;

function importVerifyKey(publicKey: Uint8Array): Promise<CryptoKey> {
  const id = publicKey.toHex();
  let key = verifyKeyCache.get(id);
  if (key === undefined) {
    if (verifyKeyCache.size >= VERIFY_KEY_CACHE_LIMIT) verifyKeyCache.clear();
    key = crypto.subtle.importKey("raw", ownBuffer(publicKey), "Ed25519", false, ["verify"]);
    verifyKeyCache.set(id, key);
    // A key WebCrypto refuses must not stay cached as a rejected promise.
    key.catch(() => verifyKeyCache.delete(id));
  }
  return key;
}

/** Verify a raw Ed25519 signature with WebCrypto. False (never a throw) for malformed input. */
export async function verifyEd25519(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await importVerifyKey(publicKey);
    return await crypto.subtle.verify("Ed25519", key, ownBuffer(signature), ownBuffer(message));
  } catch {
    return false;
  }
}

/**
 * Verify a raw Ed25519 signature synchronously with @noble/ed25519, using RFC 8032 rules
 * (not ZIP-215) so it agrees with WebCrypto and libsodium on edge cases.
 */
export function verifyEd25519Sync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

// WebCrypto's types want bytes backed by a plain ArrayBuffer, not a SharedArrayBuffer view.
function ownBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? bytes as Uint8Array<ArrayBuffer>
    : new Uint8Array(bytes);
}
