/** Storage port for OpenID tokens (spec: "OpenID"), kept only as SHA-256 hashes. */

/** What an OpenID token stands for. */
export interface OpenIdTokenRecord {
  userId: string;
  /** Milliseconds since the epoch after which the token is void. */
  expiresAt: number;
}

/** Issued OpenID tokens. */
export interface OpenIdTokenStore {
  /** Store a token's hash until `record.expiresAt` (the store may forget it any time after). */
  put(hash: string, record: OpenIdTokenRecord): Promise<void>;
  /** The record of a token hash; null when unknown or forgotten. */
  get(hash: string): Promise<OpenIdTokenRecord | null>;
}
