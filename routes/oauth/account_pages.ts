/**
 * Account management (the `account_management_uri`, spec v1.18 / MSC4191) at OAUTH_PAGES.account:
 * `?action=` org.matrix.profile, devices_list, device_view, device_delete, account_deactivate
 * and cross_signing_reset. Signed-in browsers only (others go to the login page and come back).
 * Every change is a form POST to the same path with an `action` field, the browser session's
 * CSRF token and a same-origin request, answered with a redirect back (post/redirect/get).
 *
 * Sessions are devices: signing one out deletes the device (`accounts.deleteDevices`), which
 * revokes its tokens in every process at once, OAuth or password login alike.
 */
import { type Context, Hono } from "hono";
import { html } from "hono/html";
import { MAX_DISPLAYNAME_LENGTH } from "../../domain/profile/profile_service.ts";
import { isValidDeviceId } from "../../domain/protocol/identifiers.ts";
import { MatrixError } from "../../domain/errors.ts";
import type { DeviceRecord } from "../../domain/ports/account_store.ts";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import type { AppDeps } from "../deps.ts";
import { takeRateLimit } from "../client/rate_limit_middleware.ts";
import {
  type BrowserUser,
  checkCsrf,
  currentBrowserUser,
  type FormFields,
  localPath,
  readForm,
  signedInRecently,
  signOutBrowser,
} from "./browser_session.ts";
import { clientLabel, hostOf } from "./consent_view.ts";
import { htmlPage, page, PageError, type PageMarkup, pageRedirect } from "./html_page.ts";
import {
  ACCOUNT_ACTIONS,
  accountHeader,
  accountLink,
  crossSigningResetBody,
  deactivateBody,
  deactivatedBody,
  DONE_NOTICES,
  FORM_ACTIONS,
  LEGACY_ACCOUNT_ACTIONS,
  profileBody,
  sessionBody,
  sessionDeleteBody,
  sessionListBody,
  type SessionView,
} from "./account_views.ts";

/** The account management pages. */
export function accountPagesApp(deps: AppDeps): Hono {
  const app = new Hono();
  const now = () => (deps.now ?? Date.now)();

  /** The page in the layout, under the account navigation. */
  const render = (
    c: Context,
    user: BrowserUser,
    body: PageMarkup,
    options: { title?: string; status?: 200 | 400 | 403 | 404 } = {},
  ) => {
    // Own keys only: `?done=constructor` must not reach the prototype.
    const done = c.req.query("done") ?? "";
    const notice = Object.hasOwn(DONE_NOTICES, done) ? DONE_NOTICES[done] : undefined;
    return htmlPage(c, {
      title: options.title ?? "Your account",
      status: options.status ?? 200,
      body: html`${accountHeader(user.userId, user.csrfToken, notice)}${body}`,
    });
  };

  /** A session of the user as shown (OAuth ones named after their client). */
  const sessionView = async (device: DeviceRecord): Promise<SessionView> => {
    const view: SessionView = {
      deviceId: device.deviceId,
      oauth: device.oauthClientId !== undefined,
      dehydrated: device.dehydrated === true,
      createdAt: device.createdAt,
    };
    if (device.displayName !== undefined) view.displayName = device.displayName;
    if (device.lastSeenTs !== undefined) view.lastSeenTs = device.lastSeenTs;
    if (device.lastSeenIp !== undefined) view.lastSeenIp = device.lastSeenIp;
    if (device.lastSeenUserAgent !== undefined) view.lastSeenUserAgent = device.lastSeenUserAgent;
    if (device.oauthClientId !== undefined) {
      const client = await deps.oauthClients.get(device.oauthClientId);
      if (client) {
        view.clientHost = hostOf(client.clientUri);
        view.clientName = clientLabel(client);
      }
    }
    return view;
  };

  /** The user's device named by a query or form field; PageError 404 when there is none. */
  const deviceOf = async (userId: string, deviceId: string | undefined) => {
    // Checked before any read: an over-long ID would not even fit a KV key.
    const device = deviceId !== undefined && isValidDeviceId(deviceId)
      ? await deps.accounts.getDevice(userId, deviceId)
      : null;
    if (!device) {
      throw new PageError(404, "There is no such session on your account.", "No such session");
    }
    return device;
  };

  /** How the user proves deactivation is theirs. */
  const deactivationProof = async (user: BrowserUser) => {
    if (await deps.accounts.hasPassword(user.userId)) return "password" as const;
    // No password to confirm with (an upstream provider made the account): the user signs in
    // again, then has RECENT_SIGN_IN_MS.
    return signedInRecently(user, now()) ? "recent_sign_in" as const : "sign_in_again" as const;
  };

  /** The login page, coming back to `next` (a path of this page) once signed in. */
  const toLogin = (c: Context, next: string) =>
    pageRedirect(c, `${OAUTH_PAGES.login}?next=${encodeURIComponent(next)}`);

  app.get(
    OAUTH_PAGES.account,
    page(async (c) => {
      const user = await currentBrowserUser(c, deps);
      if (!user) {
        const url = new URL(c.req.url);
        return toLogin(c, localPath(url.pathname + url.search) ?? OAUTH_PAGES.account);
      }
      const asked = c.req.query("action");
      const action = (asked !== undefined && Object.hasOwn(LEGACY_ACCOUNT_ACTIONS, asked))
        ? LEGACY_ACCOUNT_ACTIONS[asked]
        : asked;
      switch (action) {
        case undefined:
        case ACCOUNT_ACTIONS.profile: {
          const profile = await deps.profiles.profile(user.userId);
          return render(c, user, profileBody(user.csrfToken, profile.displayname));
        }
        case ACCOUNT_ACTIONS.devicesList: {
          const devices = await deps.accounts.listDevices(user.userId);
          const views = await Promise.all(devices.map(sessionView));
          // Most recently active first, as people look for the session they just used.
          views.sort((a, b) => (b.lastSeenTs ?? b.createdAt) - (a.lastSeenTs ?? a.createdAt));
          return render(c, user, sessionListBody(user.csrfToken, views));
        }
        case ACCOUNT_ACTIONS.deviceView: {
          const device = await deviceOf(user.userId, c.req.query("device_id"));
          return render(c, user, sessionBody(await sessionView(device)));
        }
        case ACCOUNT_ACTIONS.deviceDelete: {
          const device = await deviceOf(user.userId, c.req.query("device_id"));
          return render(c, user, sessionDeleteBody(user.csrfToken, await sessionView(device)));
        }
        case ACCOUNT_ACTIONS.accountDeactivate:
          return render(c, user, deactivateBody(user.csrfToken, await deactivationProof(user)));
        case ACCOUNT_ACTIONS.crossSigningReset: {
          const pending = await deps.crossSigningResetApprovals.pending(user.userId);
          return render(c, user, crossSigningResetBody(user.csrfToken, pending?.expiresAt));
        }
        default:
          // MSC4191: an action the server does not know shows the account's main page.
          return render(
            c,
            user,
            profileBody(
              user.csrfToken,
              (await deps.profiles.profile(user.userId)).displayname,
            ),
          );
      }
    }),
  );

  app.post(
    OAUTH_PAGES.account,
    page(async (c) => {
      const user = await currentBrowserUser(c, deps);
      // Signed out meanwhile (or elsewhere): sign in again and start over; nothing is done.
      if (!user) return toLogin(c, OAUTH_PAGES.account);
      const form = await readForm(c);
      await checkCsrf(c, form, user, deps);
      const status = await deps.moderation.status(user.userId);
      const action = form.action;
      // A locked account may only sign out (its sessions, here); a suspended one may not
      // change its profile (as the client API's moderation rules say).
      const signOut = action === ACCOUNT_ACTIONS.deviceDelete || action === FORM_ACTIONS.signOutAll;
      if (status.locked && !signOut) {
        throw new PageError(403, "This account has been locked by the server's administrators.");
      }
      switch (action) {
        case ACCOUNT_ACTIONS.profile: {
          if (status.suspended) {
            throw new PageError(403, "This account is suspended: its profile cannot change.");
          }
          return await saveProfile(c, user, form);
        }
        case ACCOUNT_ACTIONS.deviceDelete: {
          await takeRateLimit(deps, c, "user_write", `user:${user.userId}`);
          const device = await deviceOf(user.userId, form.device_id);
          await deps.accounts.deleteDevices(user.userId, [device.deviceId]);
          return pageRedirect(c, `${accountLink(ACCOUNT_ACTIONS.devicesList)}&done=signed_out`);
        }
        case FORM_ACTIONS.signOutAll: {
          await takeRateLimit(deps, c, "user_write", `user:${user.userId}`);
          // Every login; a dehydrated device is no login (it keeps messages for a new one).
          const devices = await deps.accounts.listDevices(user.userId);
          await deps.accounts.deleteDevices(
            user.userId,
            devices.filter((d) => !d.dehydrated).map((d) => d.deviceId),
          );
          return pageRedirect(
            c,
            `${accountLink(ACCOUNT_ACTIONS.devicesList)}&done=signed_out_all`,
          );
        }
        case ACCOUNT_ACTIONS.crossSigningReset: {
          await takeRateLimit(deps, c, "user_write", `user:${user.userId}`);
          await deps.crossSigningResetApprovals.approve(user.userId);
          return pageRedirect(c, `${accountLink(ACCOUNT_ACTIONS.crossSigningReset)}&done=approved`);
        }
        case FORM_ACTIONS.crossSigningResetCancel: {
          await deps.crossSigningResetApprovals.withdraw(user.userId);
          return pageRedirect(
            c,
            `${accountLink(ACCOUNT_ACTIONS.crossSigningReset)}&done=cancelled`,
          );
        }
        case FORM_ACTIONS.reauthenticate: {
          // A fresh sign-in is the proof an account without a password gives: end this
          // browser session and come back through the login page.
          await signOutBrowser(c, deps);
          return toLogin(c, accountLink(ACCOUNT_ACTIONS.accountDeactivate));
        }
        case ACCOUNT_ACTIONS.accountDeactivate:
          return await deactivate(c, user, form);
        default:
          throw new PageError(400, "This form asked for something the account page does not do.");
      }
    }),
  );

  /** Set (or with an empty field, remove) the display name; the member events go out. */
  async function saveProfile(c: Context, user: BrowserUser, form: FormFields) {
    const displayName = (form.displayname ?? "").trim();
    if ([...displayName].length > MAX_DISPLAYNAME_LENGTH) {
      return render(
        c,
        user,
        profileBody(
          user.csrfToken,
          displayName,
          `A display name has at most ${MAX_DISPLAYNAME_LENGTH} characters.`,
        ),
        { status: 400 },
      );
    }
    await takeRateLimit(deps, c, "profile", `user:${user.userId}`);
    if (displayName === "") {
      await deps.profiles.deleteField(user.userId, user.userId, "displayname");
    } else {
      await deps.profiles.setField(user.userId, user.userId, "displayname", displayName);
    }
    return pageRedirect(c, `${accountLink(ACCOUNT_ACTIONS.profile)}&done=profile`);
  }

  /** Deactivate after the password (or a recent sign-in), then sign the browser out. */
  async function deactivate(c: Context, user: BrowserUser, form: FormFields) {
    const proof = await deactivationProof(user);
    if (proof === "sign_in_again") {
      return render(
        c,
        user,
        deactivateBody(user.csrfToken, proof, "Your sign-in is too old: sign in again first."),
        { status: 403 },
      );
    }
    if (proof === "password") {
      const password = form.password ?? "";
      if (password === "") {
        return render(c, user, deactivateBody(user.csrfToken, proof, "Enter your password."), {
          status: 400,
        });
      }
      try {
        // Counts against the account's password failures like every other password check.
        await deps.accounts.checkPassword(user.userId, password);
      } catch (error) {
        if (!(error instanceof MatrixError) || error.status !== 403) throw error;
        return render(
          c,
          user,
          deactivateBody(user.csrfToken, proof, "That password is not right."),
          { status: 403 },
        );
      }
    }
    // As POST /account/deactivate does: addresses first (unbound at identity servers), then
    // the account, whose hooks leave rooms and drop what is kept per user.
    await deps.threepids.removeAll(user.userId);
    await deps.accounts.deactivations.deactivate(user.userId, { erase: form.erase === "true" });
    await signOutBrowser(c, deps);
    return htmlPage(c, { title: "Account deactivated", body: deactivatedBody() });
  }

  return app;
}
