/**
 * The markup of the account management pages (routes/oauth/account_pages.ts): profile, the
 * session list and one session, sign-out confirmation, deactivation and cross-signing reset
 * approval. Plain forms that POST to the account page with the session's CSRF token and an
 * `action` field; no JavaScript. Every interpolation goes through `html` (escaped).
 */
import { html } from "hono/html";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import { csrfField } from "./browser_session.ts";
import type { PageMarkup } from "./html_page.ts";

/** MSC4191's account management actions, as `?action=` values. */
export const ACCOUNT_ACTIONS = Object.freeze({
  profile: "org.matrix.profile",
  devicesList: "org.matrix.devices_list",
  deviceView: "org.matrix.device_view",
  deviceDelete: "org.matrix.device_delete",
  accountDeactivate: "org.matrix.account_deactivate",
  crossSigningReset: "org.matrix.cross_signing_reset",
});

/**
 * The names an earlier draft of MSC4191 gave the session actions, which clients released before
 * spec v1.18 still link to: served as the stable actions (not advertised in the metadata).
 */
export const LEGACY_ACCOUNT_ACTIONS: Readonly<Record<string, string>> = Object.freeze({
  "org.matrix.sessions_list": ACCOUNT_ACTIONS.devicesList,
  "org.matrix.session_view": ACCOUNT_ACTIONS.deviceView,
  "org.matrix.session_end": ACCOUNT_ACTIONS.deviceDelete,
});

/** Form-only actions of the page (not MSC4191's): posted, never linked to. */
export const FORM_ACTIONS = Object.freeze({
  signOutAll: "sign_out_all",
  crossSigningResetCancel: "cross_signing_reset_cancel",
  reauthenticate: "reauthenticate",
});

/** What the page says after a form's redirect back (`&done=`); fixed texts only. */
export const DONE_NOTICES: Readonly<Record<string, string>> = Object.freeze({
  profile: "Your profile was saved.",
  signed_out: "The session was signed out.",
  signed_out_all: "Every session was signed out.",
  approved: "Reset approved.",
  cancelled: "The approval was withdrawn.",
});

/** One session (device) as the pages show it. */
export interface SessionView {
  deviceId: string;
  displayName?: string;
  /** For OAuth sessions: the client's name (or its host when it gave none). */
  clientName?: string;
  clientHost?: string;
  oauth: boolean;
  dehydrated: boolean;
  createdAt: number;
  lastSeenTs?: number;
  lastSeenIp?: string;
  lastSeenUserAgent?: string;
}

/** A link to the account page with an action (and its parameters). */
export function accountLink(action: string, params: Record<string, string> = {}): string {
  const query = new URLSearchParams({ action, ...params });
  return `${OAUTH_PAGES.account}?${query}`;
}

/** A time as people read it, in UTC (the server does not know the reader's zone). */
export function formatTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** The navigation every account page starts with, and the notice of the last action. */
export function accountHeader(
  userId: string,
  csrfToken: string,
  notice?: string,
): PageMarkup {
  return html`
    <p>Signed in as <strong>${userId}</strong>.</p>
    <nav aria-label="Account">
      <ul>
        <li><a href="${accountLink(ACCOUNT_ACTIONS.profile)}">Profile</a></li>
        <li><a href="${accountLink(ACCOUNT_ACTIONS.devicesList)}">Sessions</a></li>
        <li><a href="${accountLink(ACCOUNT_ACTIONS.crossSigningReset)}">Reset cross-signing</a></li>
        <li><a href="${accountLink(ACCOUNT_ACTIONS.accountDeactivate)}">Deactivate account</a></li>
      </ul>
      <form method="post" action="${OAUTH_PAGES.logout}">${csrfField(csrfToken)}
    <button type="submit" class="secondary">Sign out of this browser</button>
      </form>
    </nav>
    ${notice ? html`<p role="status"><strong>${notice}</strong></p>` : ""}
  `;
}

/** A form posting one action to the account page, with the CSRF token and hidden fields. */
function actionForm(
  csrfToken: string,
  action: string,
  inner: PageMarkup,
  hidden: Record<string, string> = {},
): PageMarkup {
  return html`<form method="post" action="${OAUTH_PAGES.account}">${csrfField(csrfToken)}
<input type="hidden" name="action" value="${action}">
${
    Object.entries(hidden).map(([name, value]) =>
      html`<input type="hidden" name="${name}" value="${value}">`
    )
  }
${inner}
</form>`;
}

/** The profile: user ID and a display name form. */
export function profileBody(
  csrfToken: string,
  displayName: string | undefined,
  error?: string,
): PageMarkup {
  return html`<h2>Profile</h2>
${error ? html`<p class="error" role="alert">${error}</p>` : ""}
${
    actionForm(
      csrfToken,
      ACCOUNT_ACTIONS.profile,
      html`
        <label for="displayname">Display name</label>
        <input type="text" id="displayname" name="displayname" value="${displayName ??
          ""}" maxlength="256"
          autocomplete="nickname">
        <p class="muted">Shown to the people in your rooms. Leave it empty to remove it.</p>
        <button type="submit">Save</button>
      `,
    )
  }`;
}

function sessionName(session: SessionView): string {
  return session.displayName ?? session.clientName ?? session.deviceId;
}

function sessionApp(session: SessionView): PageMarkup {
  if (session.dehydrated) return html`Dehydrated device (keeps messages while you are away)`;
  if (!session.oauth) return html`Signed in with a password`;
  return html`${session.clientName ?? "Unknown app"}${
    session.clientHost && session.clientHost !== session.clientName
      ? html`
        <span class="muted">(${session.clientHost})</span>
      `
      : ""
  }`;
}

/** The session list, each with a link to its page and a sign-out button. */
export function sessionListBody(csrfToken: string, sessions: SessionView[]): PageMarkup {
  if (sessions.length === 0) {
    return html`
      <h2>Sessions</h2>
      <p>No app or device is signed in to your account.</p>
    `;
  }
  const rows = sessions.map((s) =>
    html`
      <tr>
        <td><a href="${accountLink(ACCOUNT_ACTIONS.deviceView, {
          device_id: s.deviceId,
        })}">${sessionName(s)}</a><br><span class="muted">${s.deviceId}</span></td>
        <td>${sessionApp(s)}</td>
        <td>${s.lastSeenTs !== undefined ? formatTime(s.lastSeenTs) : "Never"}</td>
        <td>${actionForm(
          csrfToken,
          ACCOUNT_ACTIONS.deviceDelete,
          html`
            <button type="submit" class="secondary"
              aria-label="Sign out ${sessionName(s)} (${s.deviceId})">Sign out</button>
          `,
          { device_id: s.deviceId },
        )}</td>
      </tr>
    `
  );
  return html`
    <h2>Sessions</h2>
    <p>Apps and devices signed in to your account. Signing one out ends it at once.</p>
    <table>
      <thead>
        <tr>
          <th scope="col">Session</th>
          <th scope="col">App</th>
          <th scope="col">Last active</th>
          <th scope="col"><span class="muted">Action</span></th>
        </tr>
      </thead>
      <tbody>${rows}</tbody>
    </table>
    ${actionForm(
      csrfToken,
      FORM_ACTIONS.signOutAll,
      html`<p>This browser stays signed in to this page.</p>
<button type="submit">Sign out of every session</button>`,
    )}
  `;
}

/** One session's details, with a link to sign it out. */
export function sessionBody(session: SessionView): PageMarkup {
  return html`<h2>${sessionName(session)}</h2>
<dl>
<dt>Device ID</dt><dd>${session.deviceId}</dd>
<dt>App</dt><dd>${sessionApp(session)}</dd>
<dt>Signed in</dt><dd>${formatTime(session.createdAt)}</dd>
<dt>Last active</dt><dd>${
    session.lastSeenTs !== undefined ? formatTime(session.lastSeenTs) : "Never"
  }</dd>
${
    session.lastSeenIp
      ? html`
        <dt>Last address</dt>
        <dd>${session.lastSeenIp}</dd>
      `
      : ""
  }
${
    session.lastSeenUserAgent
      ? html`
        <dt>Last user agent</dt>
        <dd>${session.lastSeenUserAgent}</dd>
      `
      : ""
  }
</dl>
<p><a class="button" href="${
    accountLink(ACCOUNT_ACTIONS.deviceDelete, { device_id: session.deviceId })
  }">Sign out this session</a>
<a href="${accountLink(ACCOUNT_ACTIONS.devicesList)}">All sessions</a></p>`;
}

/** The confirmation before signing one session out. */
export function sessionDeleteBody(csrfToken: string, session: SessionView): PageMarkup {
  return html`<h2>Sign out ${sessionName(session)}?</h2>
<p>The app on that device (${sessionApp(session)}, device ID ${session.deviceId}) is signed out
at once. It may lose encrypted messages it has not backed up.</p>
${
    actionForm(
      csrfToken,
      ACCOUNT_ACTIONS.deviceDelete,
      html`<button type="submit">Sign out</button>
<a class="button secondary" href="${accountLink(ACCOUNT_ACTIONS.devicesList)}">Cancel</a>`,
      { device_id: session.deviceId },
    )
  }`;
}

/**
 * Deactivation: with a password field when the account has a password, else a plain
 * confirmation when the browser signed in recently, else a button to sign in again.
 */
export function deactivateBody(
  csrfToken: string,
  proof: "password" | "recent_sign_in" | "sign_in_again",
  error?: string,
): PageMarkup {
  const warning = html`<h2>Deactivate your account</h2>
<p>Deactivation cannot be undone. You leave every room, every session is signed out, and your
user ID can never be used again.</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ""}`;
  if (proof === "sign_in_again") {
    return html`${warning}
<p>To confirm it is you, sign in again first.</p>
${
      actionForm(
        csrfToken,
        FORM_ACTIONS.reauthenticate,
        html`<button type="submit">Sign in again</button>`,
      )
    }`;
  }
  const password = proof === "password"
    ? html`<label for="password">Your password</label>
<input type="password" id="password" name="password" required autocomplete="current-password">`
    : "";
  return html`${warning}
${
    actionForm(
      csrfToken,
      ACCOUNT_ACTIONS.accountDeactivate,
      html`${password}
<label><input type="checkbox" name="erase" value="true"> Also erase my profile, and hide my
messages from people who join later</label>
<button type="submit">Deactivate account</button>
<a class="button secondary" href="${accountLink(ACCOUNT_ACTIONS.profile)}">Cancel</a>`,
    )
  }`;
}

/** Shown after deactivation (the browser is signed out). */
export function deactivatedBody(): PageMarkup {
  return html`<p>Your account has been deactivated and every session signed out.</p>`;
}

/** Cross-signing reset: approve, or the pending approval with a way to withdraw it. */
export function crossSigningResetBody(csrfToken: string, approvedUntil?: number): PageMarkup {
  if (approvedUntil !== undefined) {
    return html`<h2>Reset cross-signing</h2>
<p>You approved a reset. Go back to your app to finish it: until ${
      formatTime(approvedUntil)
    }, one of your apps may replace your cross-signing keys, once.</p>
${
      actionForm(
        csrfToken,
        FORM_ACTIONS.crossSigningResetCancel,
        html`<button type="submit" class="secondary">Withdraw the approval</button>`,
      )
    }`;
  }
  return html`<h2>Reset cross-signing</h2>
<p>An app asked to replace your cross-signing keys (your digital identity). Do this only if
you started it, for example because you lost your recovery key and every verified device.</p>
<p>After the reset, the people you talk to see that your identity changed, and your devices
must be verified again.</p>
${
    actionForm(
      csrfToken,
      ACCOUNT_ACTIONS.crossSigningReset,
      html`<button type="submit">Approve the reset</button>
<a class="button secondary" href="${accountLink(ACCOUNT_ACTIONS.profile)}">Cancel</a>`,
    )
  }`;
}
