/**
 * Storage port for OAuth 2.0 clients registered through RFC 7591
 * (domain/oauth/client_registry.ts).
 */
import type { OAuthClient } from "../oauth/oauth_types.ts";

/** Registered clients, by client ID. */
export interface OAuthClientStore {
  /**
   * Store a new client; false (nothing written) when its ID is already taken, so a collision of
   * random IDs can never replace another client's redirect URIs.
   */
  create(client: OAuthClient): Promise<boolean>;
  /** The client registered under `clientId`; null when none is. */
  get(clientId: string): Promise<OAuthClient | null>;
}
