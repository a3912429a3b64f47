/**
 * Our server signing keys and the signed key document peers fetch from
 * `/_matrix/key/v2/server`.
 */
import { encodeBase64Unpadded } from "./base64.ts";
import { type SigningKey, signingKeyFromSeed, signJson } from "./signing.ts";
import type { JsonObject } from "./json.ts";

/** How long peers may cache our key document; Synapse also refreshes daily. */
export const KEY_VALIDITY_MS = 24 * 60 * 60 * 1000;

/** The server's current signing key and its name. */
export interface ServerKeyring {
  serverName: string;
  current: SigningKey;
}

/**
 * A stable key ID for a seed: `ed25519:t` + 8 hex digits of the public key, so a restart with
 * the same seed advertises the same ID and a new seed never collides with an old one.
 */
export function keyIdForPublicKey(publicKey: Uint8Array): string {
  const hex = [...publicKey.slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `ed25519:t${hex}`;
}

/** Build the keyring for a server from its 32-byte seed. */
export async function keyringFromSeed(
  serverName: string,
  seed: Uint8Array,
): Promise<ServerKeyring> {
  const probe = await signingKeyFromSeed(seed, "ed25519:probe");
  const current = await signingKeyFromSeed(seed, keyIdForPublicKey(probe.publicKey));
  return { serverName, current };
}

/** The signed `/_matrix/key/v2/server` response body. */
export function signedServerKeys(keyring: ServerKeyring, now: number): Promise<JsonObject> {
  const document: JsonObject = {
    server_name: keyring.serverName,
    valid_until_ts: now + KEY_VALIDITY_MS,
    verify_keys: {
      [keyring.current.keyId]: { key: encodeBase64Unpadded(keyring.current.publicKey) },
    },
    old_verify_keys: {},
  };
  return signJson(document, keyring.serverName, keyring.current);
}
