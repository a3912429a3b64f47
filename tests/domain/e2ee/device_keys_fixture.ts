/**
 * A client device's keys for key upload and claim tests: a real Ed25519 identity key (WebCrypto)
 * that self-signs the device keys and signs one-time and fallback keys, as olm/vodozemac do.
 */
import { encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { type SigningKey, signJson } from "../../../domain/protocol/signing.ts";

/** A test device of `userId`. */
export interface TestDevice {
  userId: string;
  deviceId: string;
  /** The device's Ed25519 public key (unpadded base64). */
  ed25519: string;
  /** Its device keys object, self-signed (`extra` fields are signed too). */
  deviceKeys(extra?: JsonObject): Promise<JsonObject>;
  /** Sign any object with the device's key, as `userId` under `ed25519:<deviceId>`. */
  sign(obj: JsonObject): Promise<JsonObject>;
  /** `count` signed curve25519 one-time keys with IDs `<prefix>0`, `<prefix>1`, ... */
  oneTimeKeys(count: number, prefix?: string): Promise<Record<string, JsonObject>>;
  /** A signed fallback key with ID `keyId`. */
  fallbackKey(keyId: string): Promise<Record<string, JsonObject>>;
}

/** A fresh random 32-byte key, base64 as clients send curve25519 keys. */
export function randomKey(): string {
  return encodeBase64Unpadded(crypto.getRandomValues(new Uint8Array(32)));
}

/** A device with a fresh Ed25519 identity key. */
export async function newTestDevice(userId: string, deviceId: string): Promise<TestDevice> {
  const pair = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const signer: SigningKey = {
    keyId: `ed25519:${deviceId}`,
    publicKey: raw,
    sign: async (data) =>
      new Uint8Array(await crypto.subtle.sign("Ed25519", pair.privateKey, new Uint8Array(data))),
  };
  const curve25519 = randomKey();
  const ed25519 = encodeBase64Unpadded(raw);
  const sign = (obj: JsonObject) => signJson(obj, userId, signer) as Promise<JsonObject>;
  return {
    userId,
    deviceId,
    ed25519,
    sign,
    deviceKeys: (extra = {}) =>
      sign({
        user_id: userId,
        device_id: deviceId,
        algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        keys: { [`curve25519:${deviceId}`]: curve25519, [`ed25519:${deviceId}`]: ed25519 },
        ...extra,
      }),
    async oneTimeKeys(count, prefix = "AAAA") {
      const out: Record<string, JsonObject> = {};
      for (let i = 0; i < count; i++) {
        out[`signed_curve25519:${prefix}${i}`] = await sign({ key: randomKey() });
      }
      return out;
    },
    async fallbackKey(keyId) {
      return { [`signed_curve25519:${keyId}`]: await sign({ key: randomKey(), fallback: true }) };
    },
  };
}
