/**
 * The sign-in pages: password login (when `TESSERA_PASSWORD_LOGIN` is on) with the upstream
 * provider's button (when one is configured), registration (when registration is open, or by
 * token), and sign-out. They sign the browser in (routes/oauth/browser_session.ts) and send it
 * on to `next`, a local path only. Forms shown before sign-in carry the double-submit CSRF
 * token; failed passwords count against the account's failure limiter like `/login`.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { html } from "hono/html";
import { MatrixError } from "../../domain/errors.ts";
import { MAX_PASSWORD_LENGTH } from "../../domain/accounts/account_service.ts";
import { sameSecret } from "../../domain/accounts/uia_stages.ts";
import { OAUTH_PAGES, UPSTREAM_PATHS } from "../../domain/oauth/oauth_paths.ts";
import type { AppDeps } from "../deps.ts";
import { takeAddressRateLimit } from "../client/rate_limit_middleware.ts";
import {
  anonymousCsrfToken,
  checkCsrf,
  csrfField,
  currentBrowserUser,
  type FormFields,
  localPath,
  readForm,
  signInBrowser,
  signOutBrowser,
  withNext,
} from "./browser_session.ts";
import { htmlPage, page, PageError, type PageMarkup, pageRedirect } from "./html_page.ts";

/** Usernames longer than a user ID can be are refused before any work. */
const MAX_USERNAME_LENGTH = 255;

/** Where the browser goes after signing in: `next` if local, else the account page. */
function nextOf(c: Context, form?: FormFields): string {
  return localPath(form?.next ?? c.req.query("next")) ?? OAUTH_PAGES.account;
}

/** The login, register and logout pages. */
export function signInPages(deps: AppDeps): Hono {
  const app = new Hono();
  const { config } = deps;
  const registrationOpen = config.registration !== "closed";

  async function loginPage(
    c: Context,
    next: string,
    options: { error?: string; username?: string; status?: 200 | 403 } = {},
  ) {
    const user = await currentBrowserUser(c, deps);
    const upstream = config.upstreamOidc;
    const passwordForm = config.oauth.passwordLogin
      ? html`<form method="post" action="${OAUTH_PAGES.login}">
${csrfField(anonymousCsrfToken(c, deps))}
<input type="hidden" name="next" value="${next}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required
 autocapitalize="none" spellcheck="false" value="${options.username ?? ""}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>`
      : "";
    const upstreamButton = upstream
      ? html`<p><a class="button${config.oauth.passwordLogin ? " secondary" : ""}"
 href="${withNext(UPSTREAM_PATHS.start(upstream.id), next)}">Continue with ${upstream.name}</a></p>`
      : "";
    const none = !config.oauth.passwordLogin && !upstream
      ? html`<p class="error">No way to sign in is configured on this server.</p>`
      : "";
    return htmlPage(c, {
      title: "Sign in",
      status: options.status ?? 200,
      body: html`${
        user
          ? html`<p>You are signed in as <strong>${user.userId}</strong>.
<a href="${next}">Continue as ${user.userId}</a>, or sign in again below.</p>`
          : ""
      }
${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ""}
${passwordForm}${upstreamButton}${none}
${
        registrationOpen
          ? html`<p>No account yet? <a href="${
            withNext(OAUTH_PAGES.register, next)
          }">Create one</a></p>`
          : ""
      }`,
    });
  }

  app.get(OAUTH_PAGES.login, page((c) => loginPage(c, nextOf(c))));

  app.post(
    OAUTH_PAGES.login,
    page(async (c) => {
      if (!config.oauth.passwordLogin) {
        throw new PageError(403, "Password sign-in is turned off on this server.");
      }
      await takeAddressRateLimit(deps, c, "login");
      const form = await readForm(c);
      await checkCsrf(c, form, null, deps);
      const next = nextOf(c, form);
      const username = (form.username ?? "").trim();
      const password = form.password ?? "";
      if (
        username === "" || password === "" || username.length > MAX_USERNAME_LENGTH ||
        password.length > MAX_PASSWORD_LENGTH
      ) {
        return loginPage(c, next, {
          error: "Enter your username and password.",
          username: username.slice(0, MAX_USERNAME_LENGTH),
          status: 403,
        });
      }
      let userId: string;
      try {
        userId = deps.accounts.userIdForLogin(username);
        await deps.accounts.checkPassword(userId, password);
        // Administrators' locks refuse sign-in here as they refuse /login.
        for (const check of deps.accounts.loginChecks) await check(userId);
      } catch (error) {
        if (error instanceof MatrixError && error.status === 403) {
          const message = error.errcode === "M_USER_DEACTIVATED"
            ? "This account has been deactivated."
            : error.errcode === "M_FORBIDDEN"
            ? "Wrong username or password."
            : error.message;
          return loginPage(c, next, { error: message, username, status: 403 });
        }
        throw error;
      }
      await signInBrowser(c, deps, userId);
      return pageRedirect(c, next);
    }),
  );

  function registerPage(
    c: Context,
    next: string,
    options: { error?: string; username?: string; status?: 200 | 400 | 403 } = {},
  ) {
    const tokenField: PageMarkup | "" = config.registration === "token"
      ? html`<label for="token">Registration token</label>
<input type="text" id="token" name="token" autocomplete="off" required spellcheck="false">`
      : "";
    return htmlPage(c, {
      title: "Create an account",
      status: options.status ?? 200,
      body: html`${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ""}
<form method="post" action="${OAUTH_PAGES.register}">
${csrfField(anonymousCsrfToken(c, deps))}
<input type="hidden" name="next" value="${next}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required
 autocapitalize="none" spellcheck="false" aria-describedby="username-help"
 value="${options.username ?? ""}">
<p id="username-help" class="muted">Your Matrix ID will be @username:${config.serverName}.
Lowercase letters, digits and . _ = - / + only.</p>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="new-password" required>
<label for="password_again">Password again</label>
<input type="password" id="password_again" name="password_again" autocomplete="new-password" required>
${tokenField}
<button type="submit">Create account</button>
</form>
<p>Already have an account? <a href="${withNext(OAUTH_PAGES.login, next)}">Sign in</a></p>`,
    });
  }

  const closed = () =>
    new PageError(403, "Registration is closed on this server.", "Registration closed");

  app.get(
    OAUTH_PAGES.register,
    page((c) => {
      if (!registrationOpen) throw closed();
      return registerPage(c, nextOf(c));
    }),
  );

  app.post(
    OAUTH_PAGES.register,
    page(async (c) => {
      if (!registrationOpen) throw closed();
      await takeAddressRateLimit(deps, c, "register");
      const form = await readForm(c);
      await checkCsrf(c, form, null, deps);
      const next = nextOf(c, form);
      const username = (form.username ?? "").trim();
      const again = (message: string, status: 400 | 403 = 400) =>
        registerPage(c, next, {
          error: message,
          username: username.slice(0, MAX_USERNAME_LENGTH),
          status,
        });
      if (config.registration === "token") {
        const expected = config.registrationToken ?? "";
        if (expected === "" || !sameSecret(form.token ?? "", expected)) {
          return again("That registration token is not valid.", 403);
        }
      }
      if (username === "" || username.length > MAX_USERNAME_LENGTH) {
        return again("Choose a username.");
      }
      if ((form.password ?? "") !== (form.password_again ?? "")) {
        return again("The two passwords differ.");
      }
      let userId: string;
      try {
        ({ userId } = await deps.accounts.register({
          localpart: username,
          password: form.password ?? "",
          // The browser is signed in, not a device: an application gets its device through
          // the consent page's grant.
          inhibitLogin: true,
        }));
      } catch (error) {
        if (error instanceof MatrixError && error.status === 400) return again(error.message);
        throw error;
      }
      await signInBrowser(c, deps, userId);
      return pageRedirect(c, next);
    }),
  );

  app.get(
    OAUTH_PAGES.logout,
    page(async (c) => {
      const user = await currentBrowserUser(c, deps);
      const next = nextOf(c);
      if (!user) {
        return htmlPage(c, {
          title: "Signed out",
          body: html`<p>You are not signed in. <a href="${
            withNext(OAUTH_PAGES.login, next)
          }">Sign in</a></p>`,
        });
      }
      return htmlPage(c, {
        title: "Sign out",
        body: html`<p>Sign this browser out of <strong>${user.userId}</strong>? Applications you
allowed stay signed in; sign them out in <a href="${OAUTH_PAGES.account}">your account</a>.</p>
<form method="post" action="${OAUTH_PAGES.logout}">
${csrfField(user.csrfToken)}
<input type="hidden" name="next" value="${next}">
<button type="submit">Sign out</button>
</form>`,
      });
    }),
  );

  app.post(
    OAUTH_PAGES.logout,
    page(async (c) => {
      const form = await readForm(c);
      const user = await currentBrowserUser(c, deps);
      if (user) {
        await checkCsrf(c, form, user, deps);
        await signOutBrowser(c, deps);
      }
      const next = localPath(form.next);
      if (next !== undefined) return pageRedirect(c, next);
      return htmlPage(c, {
        title: "Signed out",
        body:
          html`<p>This browser is signed out. <a href="${OAUTH_PAGES.login}">Sign in again</a></p>`,
      });
    }),
  );

  return app;
}
