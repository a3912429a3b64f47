/**
 * OpenID Connect ID tokens: signed with ES256 (jose) by one key kept in KV, created once with
 * create-if-absent so every process signs with the same key; the public half is the JWKS.
 */
import type { Config } from "../config.ts";
import type { SigningKeyStore } from "../ports/oauth_grant_store.ts";

/** ID tokens are valid this long. */
export const ID_TOKEN_LIFETIME_S = 3600;

/** The claims an ID token is built from. */
export interface IdTokenInput {
  /** The Matrix user ID. */
  sub: string;
  /** The client ID. */
  aud: string;
  nonce?: string;
  /** When the user authenticated (ms). */
  authTime: number;
}

/** Signs ID tokens and publishes the key set. */
export class IdTokenSigner {
  /** Over the key store; `now` is injectable for tests. */
  constructor(
    private readonly store: SigningKeyStore,
    private readonly config: Config,
    private readonly now: () => number = Date.now,
  ) {}

  /** The public keys (`{keys: [...]}`) for `jwks_uri`. */
  jwks(): Promise<{ keys: JsonWebKey[] }> {
    throw new Error("IdTokenSigner.jwks: being implemented");
  }

  /** A signed ID token (iss = the issuer, exp in ID_TOKEN_LIFETIME_S). */
  sign(_input: IdTokenInput): Promise<string> {
    throw new Error("IdTokenSigner.sign: being implemented");
  }
}
