/**
 * Upstream OpenID Connect sign-in and the legacy `m.login.sso` flow (spec: "Client login via
 * SSO"). Served whether or not the OAuth API is on (oauth_app.ts mounts them before its early
 * return):
 * - `UPSTREAM_PATHS.start(id)?next=`: to the provider, the flow bound to this browser by the
 *   `tessera_upstream` cookie (one value per browser, reused by every flow it starts);
 *   `UPSTREAM_PATHS.callback(id)`: checks, signs the browser in
 *   (browser_session.ts) and goes on to `next`, a local path.
 * - `GET /login/sso/redirect[/{idpId}]?redirectUrl=`: a signed-in browser is asked to confirm
 *   (the page names the redirect host: a link from someone else must not hand them a login
 *   token silently); otherwise it signs in first (the provider for `{idpId}`, else the sign-in
 *   page, or with `action=register` the registration page, when the OAuth pages are on, else
 *   the one provider) and comes back here.
 * - `POST /login/sso/redirect` (the confirmation form, CSRF-checked): redirects to
 *   `redirectUrl` with a single-use `loginToken` for `m.login.token`.
 * - `/auth/m.login.sso/fallback/web?session=` (with a provider configured): the UIA stage
 *   `m.login.sso` that users the provider signed up, who have no password, re-authenticate
 *   with; a browser signed in within 5 minutes as the session's user confirms (CSRF-checked
 *   form), and the client retries with the session.
 */
import { type Context, Hono } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { html } from "hono/html";
import { OAUTH_PAGES, UPSTREAM_PATHS } from "../../domain/oauth/oauth_paths.ts";
import {
  UPSTREAM_FLOW_LIFETIME_MS,
  UpstreamSignInError,
} from "../../domain/oauth/upstream_sign_in.ts";
import { SSO_STAGE } from "../../domain/accounts/uia_stages.ts";
import type { AppDeps } from "../deps.ts";
import { takeAddressRateLimit } from "../client/rate_limit_middleware.ts";
import {
  checkCsrf,
  csrfField,
  currentBrowserUser,
  localPath,
  pageCookieOptions,
  readForm,
  signedInRecently,
  signInBrowser,
} from "./browser_session.ts";
import { applyPageHeaders, htmlPage, page, PageError, pageRedirect } from "./html_page.ts";

/** The cookie binding an upstream sign-in to the browser that started it. */
export const UPSTREAM_BINDING_COOKIE = "tessera_upstream";
/** The legacy SSO paths, one per client API version that serves them. */
const SSO_REDIRECT_PATHS = [
  "/_matrix/client/v3/login/sso/redirect",
  "/_matrix/client/r0/login/sso/redirect",
] as const;
/** The `m.login.sso` UIA fallback page (spec: "Fallback"), per client API version. */
const SSO_FALLBACK_PATHS = [
  "/_matrix/client/v3/auth/m.login.sso/fallback/web",
  "/_matrix/client/r0/auth/m.login.sso/fallback/web",
] as const;
/** Schemes a login token is never sent to: they run code or stay inside the browser. */
const REFUSED_REDIRECT_SCHEMES = new Set(["javascript:", "data:", "vbscript:", "file:", "blob:"]);
/**
 * The longest `redirectUrl` once percent-encoded: the confirmation path carrying it must stay
 * a `next=` the sign-in pages accept (browser_session.ts's localPath takes 2,048 characters).
 */
const MAX_ENCODED_REDIRECT_URL_LENGTH = 1900;

/** The upstream sign-in and legacy SSO routes. */
export function upstreamApp(deps: AppDeps): Hono {
  const app = new Hono();
  const upstream = deps.upstreamSignIn;

  if (upstream !== undefined) {
    const startPath = UPSTREAM_PATHS.start(upstream.providerId);
    app.get(
      startPath,
      page(async (c) => {
        await takeAddressRateLimit(deps, c, "login");
        const next = localPath(c.req.query("next")) ??
          (deps.config.oauth.enabled ? OAUTH_PAGES.account : undefined);
        if (next === undefined) throw new PageError(400, "Nothing to sign in to.");
        return await sendToProvider(c, deps, next);
      }),
    );

    app.get(
      UPSTREAM_PATHS.callback(upstream.providerId),
      page(async (c) => {
        const params = new URL(c.req.url).searchParams;
        const binding = getCookie(c, UPSTREAM_BINDING_COOKIE);
        const completed = await asSignInFailurePage(upstream.complete(params, binding));
        await signInBrowser(c, deps, completed.userId);
        return pageRedirect(c, completed.next);
      }),
    );
  }

  if (upstream !== undefined) {
    for (const path of SSO_FALLBACK_PATHS) {
      app.get(path, page((c) => ssoFallbackPage(c, deps, path)));
      app.post(path, page((c) => ssoFallbackConfirm(c, deps)));
    }
  }

  for (const path of SSO_REDIRECT_PATHS) {
    app.get(
      `${path}/:idpId`,
      page(async (c) => {
        const idpId = c.req.param("idpId");
        const redirectUrl = checkedRedirectUrl(c.req.query("redirectUrl"));
        if (upstream === undefined || idpId !== upstream.providerId) {
          throw new PageError(404, "This server has no identity provider of that name.");
        }
        await takeAddressRateLimit(deps, c, "login");
        // The user picked this provider: always through it, then the confirmation below.
        return await sendToProvider(c, deps, confirmationPath(path, redirectUrl), 302);
      }),
    );

    app.get(
      path,
      page(async (c) => {
        const redirectUrl = checkedRedirectUrl(c.req.query("redirectUrl"));
        const user = await currentBrowserUser(c, deps);
        if (user !== null) return confirmationPage(c, deps, path, redirectUrl, user);
        await takeAddressRateLimit(deps, c, "login");
        const back = confirmationPath(path, redirectUrl);
        if (deps.config.oauth.enabled) {
          // The sign-in page offers every way in (password, the provider) and comes back here;
          // `action=register` (spec 1.18, OAuth-aware clients) opens the registration page.
          const register = c.req.query("action") === "register" &&
            deps.config.registration !== "closed";
          const pagePath = register ? OAUTH_PAGES.register : OAUTH_PAGES.login;
          return redirectWithPageHeaders(c, `${pagePath}?${new URLSearchParams({ next: back })}`);
        }
        if (upstream !== undefined) return await sendToProvider(c, deps, back, 302);
        throw new PageError(404, "This server offers no single sign-on.");
      }),
    );

    app.post(
      path,
      page(async (c) => {
        const form = await readForm(c);
        const user = await currentBrowserUser(c, deps);
        if (user === null) {
          throw new PageError(
            403,
            "You are no longer signed in. Go back to the app and try again.",
          );
        }
        await checkCsrf(c, form, user, deps);
        const redirectUrl = checkedRedirectUrl(form.redirectUrl);
        const { token } = await deps.accounts.createLoginToken(user.userId);
        return redirectWithPageHeaders(c, withQueryParameter(redirectUrl, "loginToken", token));
      }),
    );
  }
  return app;
}

/**
 * The `m.login.sso` fallback page (spec: "Fallback"): a browser signed in within the last few
 * minutes confirms; otherwise it is sent to sign in (the provider, or the password page) and
 * comes back here.
 */
async function ssoFallbackPage(c: Context, deps: AppDeps, path: string) {
  const sessionId = checkedUiaSession(c.req.query("session"));
  const user = await recentBrowserUser(c, deps);
  const here = `${path}?${new URLSearchParams({ session: sessionId })}`;
  if (user === null) {
    const upstream = deps.config.upstreamOidc!;
    return htmlPage(c, {
      title: "Confirm it's you",
      body: html`
        <p>The app asked you to confirm your identity before it goes on. Sign in again:</p>
        <p><a class="button" href="${UPSTREAM_PATHS.start(upstream.id)}?${new URLSearchParams({
          next: here,
        })}">Continue with ${upstream.name}</a></p>
        ${deps.config.oauth.enabled && deps.config.oauth.passwordLogin
          ? html`<p><a href="${OAUTH_PAGES.login}?${new URLSearchParams({ next: here })}"
>Sign in with a password</a></p>`
          : ""}
      `,
    });
  }
  // Named, so a link from someone holding the user's access token cannot pass off a
  // deactivation or a password change as a plain "continue".
  const action = await deps.uia.actionInBrowser(sessionId, user.userId);
  if (action === null) {
    throw new PageError(
      400,
      "This request has expired or is not for the account you are signed in as. Start again from the app.",
    );
  }
  return htmlPage(c, {
    title: "Confirm it's you",
    body: html`
      <p>You are signed in as <strong>${user.userId}</strong>. An app asks to
      <strong>${Object.hasOwn(UIA_ACTION_WORDS, action)
        ? UIA_ACTION_WORDS[action]
        : "make a sensitive change to your account"}</strong>.
      Continue only if you asked it to.</p>
      <form method="post" action="${path}">
        ${csrfField(user.csrfToken)}
        <input type="hidden" name="session" value="${sessionId}">
        <button type="submit">Continue</button>
      </form>
    `,
  });
}

/** What each UIA action does, in the words the fallback page shows. */
const UIA_ACTION_WORDS: Readonly<Record<string, string>> = Object.freeze({
  deactivate: "deactivate your account",
  password: "change your password",
  password_reset: "reset your password",
  delete_devices: "sign out (delete) sessions of your account",
  add_threepid: "add an email address or phone number to your account",
  get_login_token: "sign in another device to your account",
  device_signing_upload: "replace your cross-signing keys (your encryption identity)",
});

/** The fallback page's confirmation: the UIA session's `m.login.sso` stage is completed. */
async function ssoFallbackConfirm(c: Context, deps: AppDeps) {
  const form = await readForm(c);
  const user = await recentBrowserUser(c, deps);
  if (user === null) {
    throw new PageError(403, "Sign in again first: go back and reload the page.");
  }
  await checkCsrf(c, form, user, deps);
  const sessionId = checkedUiaSession(form.session);
  const outcome = await deps.uia.completeInBrowser(sessionId, SSO_STAGE, user.userId);
  if (outcome === "unknown") {
    throw new PageError(400, "This request has expired. Start again from the app.");
  }
  if (outcome === "other_user") {
    throw new PageError(403, "You are signed in as another user than the one the app asked for.");
  }
  return htmlPage(c, {
    title: "Confirmed",
    body: html`<p>Thank you. Go back to the app to continue.</p>`,
  });
}

/** The signed-in browser user, when the sign-in is recent enough to count as confirmation. */
async function recentBrowserUser(c: Context, deps: AppDeps) {
  const user = await currentBrowserUser(c, deps);
  const now = (deps.now ?? Date.now)();
  return user !== null && signedInRecently(user, now) ? user : null;
}

/** A UIA session ID from the page's query or form (400 page when absent or malformed). */
function checkedUiaSession(raw: string | undefined): string {
  if (raw === undefined || !/^[A-Za-z0-9_-]{1,64}$/.test(raw)) {
    throw new PageError(400, "This page needs the session the app started (session=).");
  }
  return raw;
}

/** Start the provider's flow ending at `next`: the binding cookie, then the redirect. */
async function sendToProvider(
  c: Context,
  deps: AppDeps,
  next: string,
  status: 302 | 303 = 303,
): Promise<Response> {
  const upstream = deps.upstreamSignIn;
  if (upstream === undefined) throw new PageError(404, "No identity provider is configured.");
  const started = await asSignInFailurePage(
    upstream.begin(next, getCookie(c, UPSTREAM_BINDING_COOKIE)),
  );
  // SameSite=Lax so the provider's top-level redirect back carries it. Left to expire rather
  // than cleared after a callback: a flow started in another tab may still be bound to it
  // (each flow is single use anyway).
  setCookie(
    c,
    UPSTREAM_BINDING_COOKIE,
    started.binding,
    pageCookieOptions(deps, Math.floor(UPSTREAM_FLOW_LIFETIME_MS / 1000)),
  );
  return status === 303
    ? pageRedirect(c, started.redirectTo)
    : redirectWithPageHeaders(c, started.redirectTo);
}

/** `step`'s result; an UpstreamSignInError it throws becomes an error page with its status. */
async function asSignInFailurePage<T>(step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (error) {
    if (error instanceof UpstreamSignInError) {
      throw new PageError(error.status, error.message, "Sign-in failed");
    }
    throw error;
  }
}

/** The page asking a signed-in user to confirm sending a login token to `redirectUrl`. */
function confirmationPage(
  c: Context,
  deps: AppDeps,
  path: string,
  redirectUrl: string,
  user: { userId: string; csrfToken: string },
) {
  const target = redirectTarget(redirectUrl);
  return htmlPage(c, {
    title: `Continue to ${target}?`,
    body: html`
      <p>You are signed in as <strong>${user.userId}</strong>.</p>
      <p>Continuing signs <strong>${target}</strong> in to your account, with access to your
      messages. Only continue if you started this sign-in from that app.</p>
      <form method="post" action="${path}">
        ${csrfField(user.csrfToken)}
        <input type="hidden" name="redirectUrl" value="${redirectUrl}">
        <button type="submit">Continue to ${target}</button>
      </form>
      ${deps.config.oauth.enabled
        ? html`<p class="muted">Not you? <a href="${OAUTH_PAGES.logout}">Sign out</a>.</p>`
        : ""}
    `,
  });
}

/** What the confirmation names: the host of a web address, else the whole scheme and host. */
function redirectTarget(redirectUrl: string): string {
  const url = new URL(redirectUrl);
  if (url.protocol === "http:" || url.protocol === "https:") return url.host;
  return url.host === "" ? url.protocol : `${url.protocol}//${url.host}`;
}

/** The local path that shows the confirmation once the browser is signed in. */
function confirmationPath(path: string, redirectUrl: string): string {
  return `${path}?${new URLSearchParams({ redirectUrl })}`;
}

/** `redirectUrl` when it is an absolute URL a login token may be sent to (400 page if not). */
function checkedRedirectUrl(raw: string | undefined): string {
  if (raw === undefined || raw.length === 0) {
    throw new PageError(400, "The app did not say where to return to (redirectUrl is missing).");
  }
  if (
    new URLSearchParams({ redirectUrl: raw }).toString().length > MAX_ENCODED_REDIRECT_URL_LENGTH
  ) {
    throw new PageError(400, "The app's return address (redirectUrl) is too long.");
  }
  // The URL parser drops tabs and newlines (and trims controls) that the raw string, sent back
  // as the Location, still has: CR/LF cannot be in a header at all, and the host named on the
  // confirmation must be the one the browser goes to.
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw) || !URL.canParse(raw)) {
    throw new PageError(400, "The app's return address (redirectUrl) is not a valid URL.");
  }
  const url = new URL(raw);
  if (REFUSED_REDIRECT_SCHEMES.has(url.protocol) || url.username !== "" || url.password !== "") {
    throw new PageError(400, "The app's return address (redirectUrl) is not allowed.");
  }
  return raw;
}

/**
 * Append a query parameter to a URL as written (before any fragment), without re-encoding the
 * rest of it: clients compare their own URLs as they wrote them.
 */
export function withQueryParameter(url: string, name: string, value: string): string {
  const hash = url.indexOf("#");
  const head = hash === -1 ? url : url.slice(0, hash);
  const fragment = hash === -1 ? "" : url.slice(hash);
  const separator = !head.includes("?") ? "?" : head.endsWith("?") || head.endsWith("&") ? "" : "&";
  return `${head}${separator}${encodeURIComponent(name)}=${encodeURIComponent(value)}${fragment}`;
}

/** A 302 (the spec's status for the SSO redirect) with the pages' security headers. */
function redirectWithPageHeaders(c: Context, location: string): Response {
  applyPageHeaders(c);
  return c.redirect(location, 302);
}
