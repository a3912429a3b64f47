/**
 * The device link page (RFC 8628 §3.3, `verification_uri`): a signed-in user types the code the
 * other device shows (or arrives with it in `?code=`, `verification_uri_complete`), sees which
 * application asks for what, and allows or denies it (`deps.oauthGrants.approveDevice` /
 * `denyDevice`). Looking a code up is rate limited per user: user codes are short, and each
 * look-up is a guess (§5.1). Nothing is decided by a GET.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { html } from "hono/html";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import type { PendingDeviceAuthorization } from "../../domain/oauth/oauth_types.ts";
import type { AppDeps } from "../deps.ts";
import { takeRateLimit } from "../client/rate_limit_middleware.ts";
import {
  type BrowserUser,
  checkCsrf,
  csrfField,
  currentBrowserUser,
  readForm,
  withNext,
} from "./browser_session.ts";
import { clientLabel, clientSummary, scopeList } from "./consent_view.ts";
import { htmlPage, page, PageError, pageRedirect } from "./html_page.ts";

/** User codes are 8 letters (a dash and spaces allowed); anything much longer is not one. */
const MAX_CODE_LENGTH = 32;

/** The link page. */
export function deviceLinkPage(deps: AppDeps): Hono {
  const app = new Hono();
  const now = deps.now ?? Date.now;

  function entryForm(c: Context, user: BrowserUser, options: { error?: string; code?: string }) {
    return htmlPage(c, {
      title: "Link a device",
      status: options.error ? 400 : 200,
      body: html`${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ""}
<p>Enter the code shown on the device you are signing in to, as
<strong>${user.userId}</strong>.</p>
<form method="post" action="${OAUTH_PAGES.link}">
${csrfField(user.csrfToken)}
<label for="code">Code</label>
<input type="text" id="code" name="code" autocomplete="one-time-code" required
 autocapitalize="characters" spellcheck="false" value="${options.code ?? ""}">
<button type="submit" name="action" value="lookup">Continue</button>
</form>`,
    });
  }

  /** A pending, unexpired authorization for the code, after a rate-limited look-up. */
  async function lookUp(
    c: Context,
    user: BrowserUser,
    code: string,
  ): Promise<PendingDeviceAuthorization | null> {
    if (code.length === 0 || code.length > MAX_CODE_LENGTH) return null;
    await takeRateLimit(deps, c, "device_code_entry", `user:${user.userId}`);
    const found = await deps.oauthGrants.deviceAuthorization(code);
    return found && found.status === "pending" && found.expiresAt > now() ? found : null;
  }

  async function confirmPage(
    c: Context,
    user: BrowserUser,
    authorization: PendingDeviceAuthorization,
  ) {
    const client = await deps.oauthClients.get(authorization.clientId);
    if (!client) throw new PageError(400, "This application is no longer registered.");
    const existing = authorization.scope.deviceId !== undefined &&
      (await deps.accounts.getDevice(user.userId, authorization.scope.deviceId)) !== null;
    return htmlPage(c, {
      title: `Allow ${clientLabel(client)} on your other device?`,
      body: html`${clientSummary(client)}
<p>Code <strong>${authorization.userCode}</strong>: check that your other device shows the same
code. You are signed in as <strong>${user.userId}</strong>.</p>
<p>If you allow it, this application will be able to:</p>
${scopeList(authorization.scope, existing)}
<form method="post" action="${OAUTH_PAGES.link}">
${csrfField(user.csrfToken)}
<input type="hidden" name="code" value="${authorization.userCode}">
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny" class="secondary">Deny</button>
</form>`,
    });
  }

  const notFound = "That code is not valid or has expired. Check the code on your device.";

  app.get(
    OAUTH_PAGES.link,
    page(async (c) => {
      const user = await currentBrowserUser(c, deps);
      const url = new URL(c.req.url);
      if (!user) {
        return pageRedirect(c, withNext(OAUTH_PAGES.login, url.pathname + url.search));
      }
      const code = (c.req.query("code") ?? "").trim();
      if (code === "") return entryForm(c, user, {});
      const found = await lookUp(c, user, code);
      if (!found) return entryForm(c, user, { error: notFound, code: code.slice(0, 32) });
      return confirmPage(c, user, found);
    }),
  );

  app.post(
    OAUTH_PAGES.link,
    page(async (c) => {
      const form = await readForm(c);
      const user = await currentBrowserUser(c, deps);
      if (!user) return pageRedirect(c, withNext(OAUTH_PAGES.login, OAUTH_PAGES.link));
      await checkCsrf(c, form, user, deps);
      const code = (form.code ?? "").trim();
      const action = form.action;
      if (action === "lookup") {
        const found = await lookUp(c, user, code);
        if (!found) return entryForm(c, user, { error: notFound, code: code.slice(0, 32) });
        return confirmPage(c, user, found);
      }
      if (action !== "allow" && action !== "deny") {
        throw new PageError(400, "Choose Allow or Deny.");
      }
      // Deciding is a guess at a code too.
      await takeRateLimit(deps, c, "device_code_entry", `user:${user.userId}`);
      const decided = action === "allow"
        ? await deps.oauthGrants.approveDevice(code, user.userId)
        : await deps.oauthGrants.denyDevice(code);
      if (!decided) return entryForm(c, user, { error: notFound, code: code.slice(0, 32) });
      return htmlPage(c, {
        title: action === "allow" ? "Device allowed" : "Device refused",
        body: action === "allow"
          ? html`<p>Your other device is being signed in. You can close this page.</p>`
          : html`<p>The other device was refused and will not be signed in.</p>`,
      });
    }),
  );

  return app;
}
