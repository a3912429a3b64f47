/**
 * OpenID tokens (spec: Client-Server "OpenID", Server-Server "OpenID"): a user asks for a
 * short-lived token to hand to a third party (an integration manager, a widget), which trades it
 * at `/_matrix/federation/v1/openid/userinfo` for the user's ID. The token proves who the user
 * is and nothing more: it is no access token and opens no other endpoint.
 */
import { forbidden, MatrixError } from "../errors.ts";
import type { OpenIdTokenStore } from "../ports/openid_token_store.ts";
import { randomId, tokenHash } from "./tokens.ts";

/** How long an OpenID token lives (Synapse's default, and the spec's example). */
export const OPENID_TOKEN_LIFETIME_MS = 3_600_000;
/** The prefix of OpenID tokens, so a leaked one is recognisable, as for other tokens. */
const OPENID_TOKEN_PREFIX = "tsr_oi_";

/** The spec's OpenIdCredentials. */
export interface OpenIdCredentials {
  access_token: string;
  token_type: "Bearer";
  matrix_server_name: string;
  expires_in: number;
}

/** What the service needs. */
export interface OpenIdTokenServiceDeps {
  store: OpenIdTokenStore;
  serverName: string;
  /** Whether the account may still prove its identity (not deactivated). */
  accountActive: (userId: string) => Promise<boolean>;
  now?: () => number;
}

/** 401 M_UNKNOWN_TOKEN: the userinfo endpoint's one refusal. */
const unknownToken = () =>
  new MatrixError("M_UNKNOWN_TOKEN", 401, "The OpenID token was not recognised or has expired");

/** Issues OpenID tokens and answers for them. */
export class OpenIdTokenService {
  /** Over a token store. */
  constructor(private readonly deps: OpenIdTokenServiceDeps) {}

  /** A new token for `userId`, asked for by `requester` (who must be that user). */
  async request(requester: string, userId: string): Promise<OpenIdCredentials> {
    if (requester !== userId) throw forbidden("Cannot request an OpenID token for another user");
    const token = OPENID_TOKEN_PREFIX + randomId(32);
    await this.deps.store.put(tokenHash(token), {
      userId,
      expiresAt: this.#now() + OPENID_TOKEN_LIFETIME_MS,
    });
    return {
      access_token: token,
      token_type: "Bearer",
      matrix_server_name: this.deps.serverName,
      expires_in: OPENID_TOKEN_LIFETIME_MS / 1000,
    };
  }

  /** The user a token stands for, as `{sub}`; 401 M_UNKNOWN_TOKEN when none (any more). */
  async userInfo(token: string | undefined): Promise<{ sub: string }> {
    if (token === undefined || !token.startsWith(OPENID_TOKEN_PREFIX)) throw unknownToken();
    const record = await this.deps.store.get(tokenHash(token));
    if (record === null || record.expiresAt <= this.#now()) throw unknownToken();
    if (!(await this.deps.accountActive(record.userId))) throw unknownToken();
    return { sub: record.userId };
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}
