/**
 * The pages' browser session at the HTTP edge: the `tessera_session` cookie (HttpOnly,
 * SameSite=Lax, Path=/, Secure when the issuer is https) naming a KV record
 * (domain/oauth/browser_sessions.ts), form bodies, and CSRF checks. Every POST form carries a
 * CSRF token: the signed-in session's own, or before sign-in (login, register) a double-submit
 * token from the `tessera_csrf` cookie; and the request must come from our own origin (Hono's
 * `csrf()` check of Origin / Sec-Fetch-Site).
 */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { csrf } from "hono/csrf";
import { HTTPException } from "hono/http-exception";
import { html } from "hono/html";
import { randomId } from "../../domain/accounts/tokens.ts";
import { sameSecret } from "../../domain/accounts/uia_stages.ts";
import { BROWSER_SESSION_LIFETIME_MS } from "../../domain/oauth/browser_sessions.ts";
import { oauthIssuer } from "../../domain/oauth/oauth_paths.ts";
import type { AppDeps } from "../deps.ts";
import { PageError, type PageMarkup } from "./html_page.ts";
import { MatrixError } from "../../domain/errors.ts";
import { readBodyBytes } from "../json_body.ts";

/** The browser session cookie. */
export const SESSION_COOKIE = "tessera_session";
/** The double-submit CSRF cookie of forms shown before sign-in. */
export const ANONYMOUS_CSRF_COOKIE = "tessera_csrf";
/** The form field carrying the CSRF token. */
export const CSRF_FIELD = "csrf";
/** Form bodies of the pages are small; anything bigger is refused unread. */
export const MAX_FORM_BYTES = 16 * 1024;

/** A signed-in browser, as the pages see it. */
export interface BrowserUser {
  userId: string;
  /** Names the browser session (not its cookie). */
  sessionId: string;
  /** The token every POST form of this session carries (`csrfField(user.csrfToken)`). */
  csrfToken: string;
  /** When the user last signed in (ms): pages asking for a recent sign-in compare it. */
  authenticatedAt: number;
}

/**
 * How recent a sign-in must be to stand in for a password (accounts an upstream provider made
 * have none): deactivation on the account page, the `m.login.sso` UIA fallback page.
 */
export const RECENT_SIGN_IN_MS = 5 * 60_000;

/** Whether `user` signed in within RECENT_SIGN_IN_MS before `now`. */
export function signedInRecently(user: Pick<BrowserUser, "authenticatedAt">, now: number): boolean {
  return now - user.authenticatedAt <= RECENT_SIGN_IN_MS;
}

/** A form body: the first value of each field. */
export type FormFields = Record<string, string>;

type PageDeps = Pick<AppDeps, "config" | "browserSessions">;

/**
 * Options of the pages' cookies (the session, the anonymous CSRF token, the upstream binding):
 * HttpOnly, SameSite=Lax (still sent on a provider's top-level redirect back), Path=/, Secure
 * when the issuer is https; a session cookie unless `maxAgeSeconds` is given.
 */
export function pageCookieOptions(deps: Pick<AppDeps, "config">, maxAgeSeconds?: number) {
  return {
    httpOnly: true,
    sameSite: "Lax" as const,
    path: "/",
    secure: oauthIssuer(deps.config).startsWith("https:"),
    ...(maxAgeSeconds !== undefined ? { maxAge: maxAgeSeconds } : {}),
  };
}

/**
 * The signed-in user of this browser, or null: no cookie, an unknown or expired session, or an
 * account since deactivated (every call reads KV, so a sign-out anywhere counts at once).
 */
export async function currentBrowserUser(c: Context, deps: PageDeps): Promise<BrowserUser | null> {
  const cookie = getCookie(c, SESSION_COOKIE);
  if (cookie === undefined) return null;
  const session = await deps.browserSessions.resolve(cookie);
  if (!session) return null;
  const { userId, sessionId, csrfToken, authenticatedAt } = session;
  return { userId, sessionId, csrfToken, authenticatedAt };
}

/**
 * Sign this browser in as `userId` (the caller checked the credentials): a new session and
 * cookie, replacing any previous one (a fresh session ID on every sign-in: no fixation).
 */
export async function signInBrowser(
  c: Context,
  deps: PageDeps,
  userId: string,
): Promise<BrowserUser> {
  const previous = getCookie(c, SESSION_COOKIE);
  if (previous !== undefined) await deps.browserSessions.end(previous);
  const { cookieValue, session } = await deps.browserSessions.start(userId);
  setCookie(
    c,
    SESSION_COOKIE,
    cookieValue,
    pageCookieOptions(deps, Math.floor(BROWSER_SESSION_LIFETIME_MS / 1000)),
  );
  const { sessionId, csrfToken, authenticatedAt } = session;
  return { userId, sessionId, csrfToken, authenticatedAt };
}

/** Sign this browser out: the session record goes and the cookie is cleared. */
export async function signOutBrowser(c: Context, deps: PageDeps): Promise<void> {
  const cookie = getCookie(c, SESSION_COOKIE);
  if (cookie !== undefined) await deps.browserSessions.end(cookie);
  deleteCookie(c, SESSION_COOKIE, pageCookieOptions(deps));
}

/**
 * The CSRF token for a form shown before sign-in: the `tessera_csrf` cookie's value, set now if
 * the browser has none (a double-submit token: another site can neither read nor set it).
 */
export function anonymousCsrfToken(c: Context, deps: Pick<AppDeps, "config">): string {
  const existing = getCookie(c, ANONYMOUS_CSRF_COOKIE);
  if (existing !== undefined && /^[A-Za-z0-9_-]{32}$/.test(existing)) return existing;
  const token = randomId(24);
  setCookie(c, ANONYMOUS_CSRF_COOKIE, token, pageCookieOptions(deps));
  return token;
}

/** The hidden form field carrying a CSRF token. */
export function csrfField(token: string): PageMarkup {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${token}">`;
}

/**
 * Refuse (PageError 403) a POST that is not from our own pages: the request must come from our
 * origin (Hono's `csrf()`: `Sec-Fetch-Site: same-origin`, or an Origin equal to the request's
 * or, with `deps`, to the public base URL's, which differs behind a proxy), and the form's
 * CSRF token must be the browser session's (or, with `browserSession` null, the
 * `tessera_csrf` cookie's). Pass `deps` whenever you have it.
 */
export async function checkCsrf(
  c: Context,
  form: FormFields,
  browserSession: Pick<BrowserUser, "csrfToken"> | null,
  deps?: Pick<AppDeps, "config">,
): Promise<void> {
  const publicOrigin = deps ? new URL(oauthIssuer(deps.config)).origin : undefined;
  const originCheck = csrf({
    origin: (origin, ctx) => origin === new URL(ctx.req.url).origin || origin === publicOrigin,
  });
  try {
    await originCheck(c, () => Promise.resolve());
  } catch (error) {
    if (error instanceof HTTPException && error.status === 403) {
      throw new PageError(403, "This form was sent from another site, so it was refused.");
    }
    throw error;
  }
  const expected = browserSession?.csrfToken ?? getCookie(c, ANONYMOUS_CSRF_COOKIE);
  const given = form[CSRF_FIELD];
  if (expected === undefined || given === undefined || !sameSecret(given, expected)) {
    throw new PageError(
      403,
      "This form has expired or was not sent from this site. Go back, reload the page and try again.",
    );
  }
}

/**
 * Read an `application/x-www-form-urlencoded` body of at most MAX_FORM_BYTES (PageError 415 or
 * 413 otherwise); each field's first value.
 */
export async function readForm(c: Context): Promise<FormFields> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
    throw new PageError(415, "This page takes form submissions only.");
  }
  let bytes: Uint8Array;
  try {
    bytes = await readBodyBytes(c, MAX_FORM_BYTES);
  } catch (error) {
    if (error instanceof MatrixError && error.status === 413) {
      throw new PageError(413, "The form is too large.");
    }
    throw error;
  }
  // Browsers send UTF-8; anything else becomes replacement characters, never an error.
  const text = new TextDecoder().decode(bytes);
  // No prototype: a field named `constructor` or `__proto__` is just a field.
  const fields: FormFields = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    if (!Object.hasOwn(fields, name)) fields[name] = value;
  }
  return fields;
}

/**
 * `next` if it is a path on this server (starts with one `/`, no scheme, no `//` or `\`
 * authority trick, no control characters), else undefined: never an open redirect.
 */
export function localPath(next: string | undefined | null): string | undefined {
  if (typeof next !== "string" || next.length === 0 || next.length > 2048) return undefined;
  if (!next.startsWith("/") || next.startsWith("//")) return undefined;
  // Browsers read `\` as `/` (so `/\evil.example` is `//evil.example`) and drop tabs and
  // newlines from URLs; refuse both rather than guess what a browser makes of them.
  // deno-lint-ignore no-control-regex
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return undefined;
  const base = "http://tessera.invalid";
  let url: URL;
  try {
    url = new URL(next, base);
  } catch {
    return undefined;
  }
  if (url.origin !== base) return undefined;
  // Dot segments are resolved away: `/.//evil.example` comes out as `//evil.example`, which a
  // browser reads as another host.
  if (url.pathname.startsWith("//")) return undefined;
  return url.pathname + url.search;
}

/** `path` with `?next=` (URL-encoded) for a page that sends the browser on afterwards. */
export function withNext(path: string, next: string): string {
  return `${path}?next=${encodeURIComponent(next)}`;
}
