/**
 * The registered OAuth 2.0 clients: RFC 7591 registration (validated against the Matrix rules in
 * domain/oauth/client_metadata.ts) and look-up by client ID for the authorization, token and
 * revocation endpoints and the pages. Clients are immutable once registered, so a look-up is
 * one KV read and nothing is cached between requests.
 */
import type { OAuthClient } from "./oauth_types.ts";
import type { OAuthClientStore } from "../ports/oauth_client_store.ts";
import { validateClientMetadata } from "./client_metadata.ts";
import { OAuthError } from "./oauth_errors.ts";
import { randomId } from "../accounts/tokens.ts";

/** What client IDs look like (ours are 22 base64url characters); anything else is unknown. */
const CLIENT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Registration and look-up of OAuth 2.0 clients. */
export class OAuthClientRegistry {
  /** Over the client store; `now` injectable for tests. */
  constructor(
    private readonly store: OAuthClientStore,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Register a client from a registration request body (parsed JSON). Throws OAuthError
   * `invalid_redirect_uri` or `invalid_client_metadata` (400) saying which rule failed; nothing
   * is stored then.
   */
  async register(raw: unknown): Promise<OAuthClient> {
    const result = validateClientMetadata(raw, this.now());
    if (!result.ok) throw new OAuthError(result.error, result.description, 400);
    // 128 random bits: a collision is not expected, but create() never overwrites one.
    for (let attempt = 0; attempt < 3; attempt++) {
      const client: OAuthClient = { clientId: randomId(16), ...result.client };
      if (await this.store.create(client)) return client;
    }
    throw new OAuthError("server_error", "Could not allocate a client ID", 500);
  }

  /** The client registered as `clientId`; null when there is none (or the ID is malformed). */
  async get(clientId: string): Promise<OAuthClient | null> {
    if (!CLIENT_ID_PATTERN.test(clientId)) return null;
    return await this.store.get(clientId);
  }
}
