/**
 * Our server signing keys and the signed key document peers fetch from
 * `/_matrix/key/v2/server`.
 */
import { encodeBase64Unpadded } from "./base64.ts";
import { type SigningKey, signingKeyFromSeed, signJson } from "./signing.ts";
import type { JsonObject } from "./json.ts";
import type { OldSigningKey } from "../federation/key_config.ts";

/** How long peers may cache our key document; Synapse also refreshes daily. */
export const KEY_VALIDITY_MS = 24 * 60 * 60 * 1000;

/** The server's current signing key, its retired keys (public halves only) and its name. */
export interface ServerKeyring {
  serverName: string;
  current: SigningKey;
  /** Keys used before a rotation (`TESSERA_OLD_SIGNING_KEYS`); empty when none. */
  old: readonly OldSigningKey[];
}

/**
 * A stable key ID for a seed: `ed25519:t` + 8 hex digits of the public key, so a restart with
 * the same seed advertises the same ID and a new seed never collides with an old one.
 */
export function keyIdForPublicKey(publicKey: Uint8Array): string {
  const hex = [...publicKey.slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `ed25519:t${hex}`;
}

/**
 * Build the keyring for a server from its 32-byte seed and its retired keys. Throws a
 * RangeError when a retired key is the current key or shares its ID: peers would cache one
 * public key under that ID and refuse what the other signed.
 */
export async function keyringFromSeed(
  serverName: string,
  seed: Uint8Array,
  old: readonly OldSigningKey[] = [],
): Promise<ServerKeyring> {
  const probe = await signingKeyFromSeed(seed, "ed25519:probe");
  const current = await signingKeyFromSeed(seed, keyIdForPublicKey(probe.publicKey));
  for (const key of old) {
    if (key.keyId === current.keyId || key.publicKey.toHex() === current.publicKey.toHex()) {
      throw new RangeError(
        `TESSERA_OLD_SIGNING_KEYS: ${key.keyId} is the current signing key (${current.keyId})`,
      );
    }
  }
  return { serverName, current, old };
}

/**
 * Our own public key `keyId` if it verifies what was signed at `atTs`: the current key always,
 * a retired key up to its `expired_ts` (any time when `atTs` is 0, as for room versions 1-4).
 */
export function ownVerifyKey(
  keyring: ServerKeyring,
  keyId: string,
  atTs: number,
): Uint8Array | undefined {
  if (keyId === keyring.current.keyId) return keyring.current.publicKey;
  const old = keyring.old.find((key) => key.keyId === keyId);
  return old !== undefined && atTs <= old.expiredTs ? old.publicKey : undefined;
}

/** The signed `/_matrix/key/v2/server` response body. */
export function signedServerKeys(keyring: ServerKeyring, now: number): Promise<JsonObject> {
  const document: JsonObject = {
    server_name: keyring.serverName,
    valid_until_ts: now + KEY_VALIDITY_MS,
    verify_keys: {
      [keyring.current.keyId]: { key: encodeBase64Unpadded(keyring.current.publicKey) },
    },
    old_verify_keys: Object.fromEntries(
      keyring.old.map((key) => [
        key.keyId,
        { key: encodeBase64Unpadded(key.publicKey), expired_ts: key.expiredTs },
      ]),
    ),
  };
  return signJson(document, keyring.serverName, keyring.current);
}
