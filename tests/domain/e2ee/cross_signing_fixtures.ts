/**
 * Real Ed25519 keys for cross-signing tests (WebCrypto), key objects built and signed the way
 * clients build them, and a small in-memory DeviceKeyReader.
 */
import { encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { signJson } from "../../../domain/protocol/signing.ts";
import type { DeviceKeyReader, DeviceKeysByUser } from "../../../domain/ports/device_key_store.ts";
import type { CrossSigningUsage } from "../../../domain/ports/cross_signing_store.ts";

/** An Ed25519 key pair: its unpadded base64 public key and a JSON signer. */
export interface TestKeyPair {
  publicKey: string;
  /** Sign `obj` as `userId` under key ID `keyId` (default `ed25519:<publicKey>`). */
  sign<T extends object>(obj: T, userId: string, keyId?: string): Promise<T>;
}

/** A fresh random key pair. */
export async function newKeyPair(): Promise<TestKeyPair> {
  const pair = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const publicKey = encodeBase64Unpadded(raw);
  return {
    publicKey,
    sign: async (obj, userId, keyId = `ed25519:${publicKey}`) =>
      await signJson(obj, userId, {
        keyId,
        publicKey: raw,
        sign: async (data) =>
          new Uint8Array(
            await crypto.subtle.sign("Ed25519", pair.privateKey, new Uint8Array(data)),
          ),
      }),
  };
}

/** An unsigned cross-signing key object for `pair`. */
export function crossSigningKey(
  userId: string,
  usage: CrossSigningUsage,
  pair: TestKeyPair,
): JsonObject {
  return {
    user_id: userId,
    usage: [usage],
    keys: { [`ed25519:${pair.publicKey}`]: pair.publicKey },
  };
}

/** A user's three cross-signing key pairs and their uploadable key objects. */
export interface TestCrossSigning {
  master: TestKeyPair;
  selfSigning: TestKeyPair;
  userSigning: TestKeyPair;
  upload: { master: JsonObject; self_signing: JsonObject; user_signing: JsonObject };
}

/** Fresh cross-signing keys for `userId`, the signing keys signed by the master key. */
export async function newCrossSigning(userId: string): Promise<TestCrossSigning> {
  const [master, selfSigning, userSigning] = await Promise.all([
    newKeyPair(),
    newKeyPair(),
    newKeyPair(),
  ]);
  return {
    master,
    selfSigning,
    userSigning,
    upload: {
      master: crossSigningKey(userId, "master", master),
      self_signing: await master.sign(crossSigningKey(userId, "self_signing", selfSigning), userId),
      user_signing: await master.sign(crossSigningKey(userId, "user_signing", userSigning), userId),
    },
  };
}

/** A device's keys as /keys/upload takes them, self-signed by its Ed25519 key. */
export async function newDeviceKeys(
  userId: string,
  deviceId: string,
): Promise<{ pair: TestKeyPair; keys: JsonObject }> {
  const pair = await newKeyPair();
  const keys = await pair.sign(
    {
      user_id: userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: {
        [`curve25519:${deviceId}`]: "Q8ItiAc0EFbcGOcTb3Fbr6SXrv6zRYt6hDUZ+JbO+0U",
        [`ed25519:${deviceId}`]: pair.publicKey,
      },
    },
    userId,
    `ed25519:${deviceId}`,
  );
  return { pair, keys };
}

/** An in-memory DeviceKeyReader: `put` a device's keys, `remove` them. */
export class MemoryDeviceKeys implements DeviceKeyReader {
  readonly #keys = new Map<string, Map<string, JsonObject>>();

  /** Store a device's keys. */
  put(userId: string, deviceId: string, keys: JsonObject): void {
    const devices = this.#keys.get(userId) ?? new Map();
    devices.set(deviceId, keys);
    this.#keys.set(userId, devices);
  }

  /** Forget a device's keys. */
  remove(userId: string, deviceId: string): void {
    this.#keys.get(userId)?.delete(deviceId);
  }

  deviceKeys(query: ReadonlyMap<string, readonly string[]>): Promise<DeviceKeysByUser> {
    const out: DeviceKeysByUser = new Map();
    for (const [userId, deviceIds] of query) {
      const devices = this.#keys.get(userId) ?? new Map<string, JsonObject>();
      const wanted = deviceIds.length === 0 ? [...devices.keys()] : deviceIds;
      const found = new Map<string, JsonObject>();
      for (const id of wanted) {
        const keys = devices.get(id);
        if (keys !== undefined) found.set(id, structuredClone(keys));
      }
      out.set(userId, found);
    }
    return Promise.resolve(out);
  }
}
