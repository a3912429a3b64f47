/**
 * OpenID Connect ID tokens: signed with ES256 (jose) by one key kept in KV, created once with
 * create-if-absent so every process signs with the same key; the public half is the JWKS. The
 * key, once read, is held in memory: it never changes, so the copy cannot go stale.
 */
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  SignJWT,
} from "jose";
import type { Config } from "../config.ts";
import type { SigningKeyStore } from "../ports/oauth_grant_store.ts";
import { oauthIssuer } from "./oauth_paths.ts";

/** ID tokens are valid this long. */
export const ID_TOKEN_LIFETIME_S = 3600;
/** The one signing algorithm (the metadata's id_token_signing_alg_values_supported). */
export const ID_TOKEN_ALG = "ES256";

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

interface LoadedKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  kid: string;
}

/** Signs ID tokens and publishes the key set. */
export class IdTokenSigner {
  #loaded?: Promise<LoadedKey>;

  /** Over the key store; `now` is injectable for tests. */
  constructor(
    private readonly store: SigningKeyStore,
    private readonly config: Config,
    private readonly now: () => number = Date.now,
  ) {}

  /** The public keys (`{keys: [...]}`) for `jwks_uri`. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const { publicJwk } = await this.#key();
    return { keys: [publicJwk] };
  }

  /** A signed ID token (iss = the issuer, exp in ID_TOKEN_LIFETIME_S). */
  async sign(input: IdTokenInput): Promise<string> {
    const { privateKey, kid } = await this.#key();
    const iat = Math.floor(this.now() / 1000);
    const claims: Record<string, unknown> = { auth_time: Math.floor(input.authTime / 1000) };
    if (input.nonce !== undefined) claims.nonce = input.nonce;
    return await new SignJWT(claims)
      .setProtectedHeader({ alg: ID_TOKEN_ALG, kid, typ: "JWT" })
      .setIssuer(oauthIssuer(this.config))
      .setSubject(input.sub)
      .setAudience(input.aud)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ID_TOKEN_LIFETIME_S)
      .sign(privateKey);
  }

  #key(): Promise<LoadedKey> {
    if (!this.#loaded) {
      this.#loaded = this.#load();
      // A failed read (storage down) is retried by the next caller rather than cached.
      this.#loaded.catch(() => (this.#loaded = undefined));
    }
    return this.#loaded;
  }

  async #load(): Promise<LoadedKey> {
    const stored = await this.store.getOrCreate(async () => {
      const { privateKey } = await generateKeyPair(ID_TOKEN_ALG, { extractable: true });
      return await exportJWK(privateKey) as JsonWebKey;
    }) as JWK;
    const { kty, crv, x, y } = stored;
    const publicJwk: JWK = { kty, crv, x, y };
    const kid = await calculateJwkThumbprint(publicJwk);
    const privateKey = await importJWK(stored, ID_TOKEN_ALG) as CryptoKey;
    return {
      privateKey,
      publicJwk: { ...publicJwk, kid, use: "sig", alg: ID_TOKEN_ALG },
      kid,
    };
  }
}
