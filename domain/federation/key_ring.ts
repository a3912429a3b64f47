/**
 * The key ring: the public signing keys of homeservers, ours and remote ones, as
 * gomatrixserverlib's KeyRing and Synapse's Keyring provide them. Request authentication
 * (X-Matrix) and event signature checks ask it for one key at one moment.
 */

/** Looks up the public half of a server's signing key. */
export interface KeyRing {
  /**
   * The Ed25519 public key `keyId` of `serverName` if it was valid at `atTs` (ms since the
   * epoch), else undefined (unknown key, unreachable server, expired before `atTs`). A current
   * key counts as valid up to its `valid_until_ts` (capped at 7 days after fetching, as the
   * spec requires), an old key up to its `expired_ts`. Pass `atTs` 0 to accept any key the
   * server ever published (room versions 1 to 4, which do not enforce key validity).
   */
  verifyKey(serverName: string, keyId: string, atTs: number): Promise<Uint8Array | undefined>;
}
