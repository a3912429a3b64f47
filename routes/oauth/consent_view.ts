/**
 * How the consent, device link and account pages describe a client and what it asks for: the
 * name it registered (marked as its own claim), the host of its `client_uri` (which
 * registration tied its redirect URIs to), its logo only over https, and each scope in words,
 * with the device the session will create or take over.
 */
import { html } from "hono/html";
import type { MatrixScope, OAuthClient } from "../../domain/oauth/oauth_types.ts";
import type { PageMarkup } from "./html_page.ts";

/** The host of a URL, or the URL itself if it does not parse. */
export function hostOf(uri: string): string {
  try {
    return new URL(uri).host || uri;
  } catch {
    return uri;
  }
}

/** The client's name as shown (its registered name, else its host). */
export function clientLabel(client: OAuthClient): string {
  return client.clientName ?? hostOf(client.clientUri);
}

/** The client block: logo (https only), name, the site it belongs to, its policies. */
export function clientSummary(client: OAuthClient): PageMarkup {
  const logo = client.logoUri?.startsWith("https://")
    ? html`<img class="logo" src="${client.logoUri}" alt="">`
    : "";
  const terms = [
    client.tosUri ? html`<a href="${client.tosUri}">Terms of service</a>` : "",
    client.policyUri ? html`<a href="${client.policyUri}">Privacy policy</a>` : "",
  ].filter((t) => t !== "");
  return html`<div>
${logo}
<p><strong>${clientLabel(client)}</strong>
<span class="muted">(a name the application chose for itself)</span><br>
Website: <a href="${client.clientUri}">${hostOf(client.clientUri)}</a></p>
${terms.length > 0 ? html`<p>${terms[0]} ${terms[1] ?? ""}</p>` : ""}
</div>`;
}

/**
 * The scope in words; `existingDevice` when the user already has a device with the requested
 * ID (the application takes that session over).
 */
export function scopeList(scope: MatrixScope, existingDevice: boolean): PageMarkup {
  const device = scope.deviceId === undefined
    ? ""
    : existingDevice
    ? html`<li>Take over your existing session <code>${scope.deviceId}</code> (it will be signed
in again for this application)</li>`
    : html`<li>Create a new session with the device ID <code>${scope.deviceId}</code></li>`;
  return html`<ul class="scopes">
<li>Full access to your account: read and send messages, join and leave rooms, change your
settings and manage your encryption keys</li>
${device}
${scope.openid ? html`<li>Know your Matrix ID</li>` : ""}
</ul>`;
}
