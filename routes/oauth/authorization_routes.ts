/**
 * The authorization endpoint (RFC 6749 §4.1.1 with PKCE, as the Matrix OAuth 2.0 API profiles
 * it) and the consent page.
 *
 * Order matters (RFC 6749 §4.1.2.1): until the client and its redirect URI are known good, an
 * error is an HTML page and never a redirect, or the endpoint would be an open redirector. After
 * that every error goes back to the client in the response mode it asked for, with `state` and
 * `iss` (RFC 9207). A valid request is parked in KV (domain/oauth/pending_authorizations.ts)
 * and the browser goes to the consent page, through sign-in or registration when needed; the
 * consent form mints the code (`deps.oauthGrants.issueCode`), taking the parked request once.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { html } from "hono/html";
import { OAuthError } from "../../domain/oauth/oauth_errors.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES, oauthIssuer } from "../../domain/oauth/oauth_paths.ts";
import type { AuthorizationRequest } from "../../domain/oauth/oauth_types.ts";
import { checkCodeChallenge } from "../../domain/oauth/pkce.ts";
import { redirectUriMatches } from "../../domain/oauth/redirect_uris.ts";
import { parseScope } from "../../domain/oauth/scopes.ts";
import type { AppDeps } from "../deps.ts";
import { takeAddressRateLimit } from "../client/rate_limit_middleware.ts";
import {
  type BrowserUser,
  checkCsrf,
  csrfField,
  currentBrowserUser,
  readForm,
  withNext,
} from "./browser_session.ts";
import { clientLabel, clientSummary, hostOf, scopeList } from "./consent_view.ts";
import { errorPage, htmlPage, page, PageError, pageRedirect } from "./html_page.ts";

/** The consent page's answer when its parked request is gone (expired, or answered already). */
const REQUEST_GONE =
  "This sign-in request has expired or was already answered. Go back to the application and start again.";

/** `state` and `nonce` are opaque to us; bounded so a parked request stays small. */
const MAX_STATE_LENGTH = 2048;
const MAX_NONCE_LENGTH = 512;

/** The parameters RFC 6749 §3.1 says must not appear twice (and the ones we read). */
const SINGLE_PARAMETERS = [
  "client_id",
  "redirect_uri",
  "response_type",
  "response_mode",
  "state",
  "scope",
  "code_challenge",
  "code_challenge_method",
  "nonce",
  "prompt",
];

/** The path of the consent page of a parked request. */
export function consentPath(requestId: string): string {
  return `${OAUTH_PAGES.consent}/${requestId}`;
}

/**
 * The URL of a redirect back to the client: `params` appended to the redirect URI's query, or
 * put in its fragment (registered redirect URIs have none), as the request's response mode says.
 */
export function clientRedirectUrl(
  redirectUri: string,
  responseMode: "query" | "fragment",
  params: Record<string, string | undefined>,
): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) search.append(name, value);
  }
  if (responseMode === "fragment") return `${redirectUri}#${search}`;
  return `${redirectUri}${redirectUri.includes("?") ? "&" : "?"}${search}`;
}

/** The authorization endpoint and the consent page. */
export function authorizationRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const issuer = oauthIssuer(deps.config);
  const now = deps.now ?? Date.now;

  app.get(
    OAUTH_ENDPOINTS.authorization,
    page(async (c) => {
      const query = new URL(c.req.url).searchParams;
      const one = (name: string) => query.get(name) ?? undefined;

      // 1. The client and its redirect URI: errors here are pages, never redirects.
      for (const name of ["client_id", "redirect_uri"]) {
        if (query.getAll(name).length > 1) {
          throw new PageError(400, `The application's request gave ${name} more than once.`);
        }
      }
      const clientId = one("client_id");
      if (clientId === undefined || clientId === "") {
        throw new PageError(400, "The application's request did not say which application it is.");
      }
      const client = await deps.oauthClients.get(clientId);
      if (!client) {
        throw new PageError(
          400,
          "This application is not registered with this server. Go back to the application and try again.",
        );
      }
      const redirectUri = one("redirect_uri");
      if (redirectUri === undefined || !redirectUriMatches(client.redirectUris, redirectUri)) {
        throw new PageError(
          400,
          "The application asked to send you to an address it did not register, so the request was refused.",
        );
      }

      // 2. Everything else goes back to the client as an error.
      const rawMode = one("response_mode");
      const responseMode = rawMode === "fragment" ? "fragment" : "query";
      const state = one("state");
      const fail = (error: OAuthError) =>
        pageRedirect(
          c,
          clientRedirectUrl(redirectUri, responseMode, {
            error: error.error,
            error_description: error.description,
            state: state !== undefined && state.length <= MAX_STATE_LENGTH ? state : undefined,
            iss: issuer,
          }),
        );

      let request: AuthorizationRequest;
      try {
        request = checkRequest(query, client.grantTypes, clientId, redirectUri, responseMode);
      } catch (error) {
        if (error instanceof OAuthError) return fail(error);
        throw error;
      }

      const user = await currentBrowserUser(c, deps);
      if (request.prompt === "none") {
        // We always ask for consent, so a silent authorization can never succeed.
        return fail(
          user
            ? new OAuthError("consent_required", "The user must approve this application")
            : new OAuthError("login_required", "The user is not signed in"),
        );
      }
      // Anyone may send this request and each one parks a record for 15 minutes: limited per
      // address like the other anonymous sign-in steps, or a loop fills KV.
      await takeAddressRateLimit(deps, c, "login");
      const requestId = await deps.pendingAuthorizations.park(request);
      const consent = consentPath(requestId);
      if (request.prompt === "create" && deps.config.registration !== "closed") {
        return pageRedirect(c, withNext(OAUTH_PAGES.register, consent));
      }
      if (!user || request.prompt === "login") {
        return pageRedirect(c, withNext(OAUTH_PAGES.login, consent));
      }
      return pageRedirect(c, consent);
    }),
  );

  /** The parked request and the signed-in user, or the redirect to sign in first. */
  async function consentContext(c: Context, requestId: string) {
    const pending = await deps.pendingAuthorizations.get(requestId);
    if (!pending) {
      throw new PageError(404, REQUEST_GONE);
    }
    const user = await currentBrowserUser(c, deps);
    const path = consentPath(requestId);
    // prompt=login: the user must have signed in after the request arrived.
    if (!user || (pending.request.prompt === "login" && user.authenticatedAt < pending.createdAt)) {
      return { redirect: pageRedirect(c, withNext(OAUTH_PAGES.login, path)) } as const;
    }
    const client = await deps.oauthClients.get(pending.request.clientId);
    if (!client) throw new PageError(400, "This application is no longer registered.");
    return { pending, user, client, path } as const;
  }

  app.get(
    `${OAUTH_PAGES.consent}/:requestId`,
    page(async (c) => {
      const context = await consentContext(c, c.req.param("requestId") ?? "");
      if ("redirect" in context) return context.redirect;
      const { pending, user, client, path } = context;
      const { request } = pending;
      const existing = request.scope.deviceId !== undefined &&
        (await deps.accounts.getDevice(user.userId, request.scope.deviceId)) !== null;
      return htmlPage(c, {
        title: `Allow ${clientLabel(client)} to use your account?`,
        body: html`${clientSummary(client)}
<p>You are signed in as <strong>${user.userId}</strong>.
<a href="${withNext(OAUTH_PAGES.login, path)}">Use another account</a></p>
<p>If you allow it, this application will be able to:</p>
${scopeList(request.scope, existing)}
<p>You will then be sent to <strong>${hostOf(request.redirectUri)}</strong>.
Only allow applications you trust: you can sign them out at any time in
<a href="${OAUTH_PAGES.account}">your account</a>.</p>
<form method="post" action="${path}">
${csrfField(user.csrfToken)}
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny" class="secondary">Deny</button>
</form>`,
      });
    }),
  );

  app.post(
    `${OAUTH_PAGES.consent}/:requestId`,
    page(async (c) => {
      const requestId = c.req.param("requestId") ?? "";
      const form = await readForm(c);
      const context = await consentContext(c, requestId);
      if ("redirect" in context) return context.redirect;
      const { user } = context;
      await checkCsrf(c, form, user, deps);
      const action = form.action;
      if (action !== "allow" && action !== "deny") {
        throw new PageError(400, "Choose Allow or Deny.");
      }
      // Taken once: a double submit or a second tab cannot mint a second code.
      const taken = await deps.pendingAuthorizations.take(requestId);
      if (!taken) {
        return errorPage(c, 404, REQUEST_GONE);
      }
      const { request } = taken;
      if (action === "deny") {
        return pageRedirect(
          c,
          clientRedirectUrl(request.redirectUri, request.responseMode, {
            error: "access_denied",
            error_description: "The user refused to let the application use the account",
            state: request.state,
            iss: issuer,
          }),
        );
      }
      const code = await deps.oauthGrants.issueCode(request, user.userId, {
        authTime: authTimeOf(user, now),
      });
      return pageRedirect(
        c,
        clientRedirectUrl(request.redirectUri, request.responseMode, {
          code,
          state: request.state,
          iss: issuer,
        }),
      );
    }),
  );

  return app;
}

function authTimeOf(user: BrowserUser, now: () => number): number {
  return Math.min(user.authenticatedAt, now());
}

/**
 * Check every parameter after the redirect URI (throws OAuthError, which goes back to the
 * client): no repeats, `response_type=code`, a known response mode, PKCE S256, the scope, the
 * prompt, and bounded `state` and `nonce`.
 */
function checkRequest(
  query: URLSearchParams,
  grantTypes: readonly string[],
  clientId: string,
  redirectUri: string,
  responseMode: "query" | "fragment",
): AuthorizationRequest {
  for (const name of SINGLE_PARAMETERS) {
    if (query.getAll(name).length > 1) {
      throw new OAuthError("invalid_request", `${name} was given more than once`);
    }
  }
  const one = (name: string) => query.get(name) ?? undefined;
  const rawMode = one("response_mode");
  if (rawMode !== undefined && rawMode !== "query" && rawMode !== "fragment") {
    throw new OAuthError("invalid_request", "response_mode must be query or fragment");
  }
  const responseType = one("response_type");
  if (responseType === undefined) {
    throw new OAuthError("invalid_request", "response_type is required (code)");
  }
  if (responseType !== "code") {
    throw new OAuthError("unsupported_response_type", "Only response_type=code is supported");
  }
  if (!grantTypes.includes("authorization_code")) {
    throw new OAuthError(
      "unauthorized_client",
      "The client did not register the authorization_code grant",
    );
  }
  const codeChallenge = checkCodeChallenge(one("code_challenge_method"), one("code_challenge"));
  const scope = parseScope(one("scope") ?? "");
  const prompt = parsePrompt(one("prompt"));
  const state = one("state");
  if (state !== undefined && state.length > MAX_STATE_LENGTH) {
    throw new OAuthError("invalid_request", `state is longer than ${MAX_STATE_LENGTH} characters`);
  }
  const nonce = one("nonce");
  if (nonce !== undefined && nonce.length > MAX_NONCE_LENGTH) {
    throw new OAuthError("invalid_request", `nonce is longer than ${MAX_NONCE_LENGTH} characters`);
  }
  return {
    clientId,
    redirectUri,
    responseMode,
    scope,
    codeChallenge,
    ...(state !== undefined && { state }),
    ...(nonce !== undefined && { nonce }),
    ...(prompt !== undefined && { prompt }),
  };
}

/**
 * OpenID Connect's `prompt`: a space-separated list of `none`, `login`, `consent`, `create`
 * (`none` only alone). Consent is always asked, so `consent` changes nothing; `create` wins
 * over `login`.
 */
function parsePrompt(raw: string | undefined): AuthorizationRequest["prompt"] {
  if (raw === undefined || raw.trim() === "") return undefined;
  const values = new Set(raw.split(" ").filter((v) => v !== ""));
  for (const value of values) {
    if (!["none", "login", "consent", "create"].includes(value)) {
      throw new OAuthError(
        "invalid_request",
        `prompt value ${JSON.stringify(value.slice(0, 20))} is not supported`,
      );
    }
  }
  if (values.has("none")) {
    if (values.size > 1) {
      throw new OAuthError("invalid_request", "prompt=none cannot be combined with other values");
    }
    return "none";
  }
  if (values.has("create")) return "create";
  if (values.has("login")) return "login";
  return "consent";
}
