/**
 * The one layout of the HTML pages (sign-in, consent, account, upstream confirmation): readable
 * and usable without JavaScript (there is none), keyboard-first (a skip link, visible focus,
 * a label on every input), one small inline stylesheet allowed by its hash in the page's
 * Content-Security-Policy, and security headers on every answer, redirects included: no
 * framing, no referrer to other sites (page URLs carry request IDs and user codes), never
 * cached.
 *
 * Interpolations in `html` templates are escaped; `raw` is only for constants of this module.
 */
import type { Context, Handler } from "hono";
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64Unpadded } from "../../domain/protocol/base64.ts";
import { MatrixError } from "../../domain/errors.ts";

/** Markup built with `html` (escaped), possibly still resolving. */
export type PageMarkup = HtmlEscapedString | Promise<HtmlEscapedString>;

/** HTTP statuses a page may answer with. */
export type PageStatus =
  | 200
  | 400
  | 403
  | 404
  | 405
  | 409
  | 410
  | 413
  | 415
  | 429
  | 500
  | 502
  | 503;

const STYLESHEET = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--accent:#0b57d0;--line:#d0d7de;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--accent:#8ab4f8;--line:#30363d;--bad:#f2b8b5}}
*{box-sizing:border-box}
body{margin:0;font:1rem/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:34rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 1rem}
a{color:var(--accent)}
.skip{position:absolute;left:-999px;top:0;padding:.5rem;background:var(--bg)}
.skip:focus{left:0}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
label{display:block;margin:1rem 0 .25rem;font-weight:600}
input[type=text],input[type=password]{width:100%;padding:.5rem;font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:4px}
button,.button{display:inline-block;margin:1rem .5rem 0 0;padding:.5rem 1rem;font:inherit;border:1px solid var(--accent);border-radius:4px;background:var(--accent);color:var(--bg);text-decoration:none;cursor:pointer}
button.secondary,.button.secondary{background:transparent;color:var(--accent)}
.muted{color:var(--muted)}
.error{color:var(--bad);font-weight:600}
ul.scopes li{margin:.25rem 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem;border-bottom:1px solid var(--line)}
img.logo{max-width:4rem;max-height:4rem}
`;

/** The stylesheet's CSP hash: the only style the pages may apply. */
const STYLE_HASH = `'sha256-${
  encodeBase64Unpadded(sha256(new TextEncoder().encode(STYLESHEET)))
}='`;

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `style-src ${STYLE_HASH}`,
  // Client logos are shown only when they are https (checked where they are rendered).
  "img-src https:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  // No form-action: the consent form's answer is a redirect to the client, which
  // form-action would block in some browsers.
].join("; ");

/**
 * Set the pages' security headers on the response being built (pages, their redirects and
 * their error answers): no framing (clickjacking of Allow buttons), no referrer to other sites,
 * no caching, no sniffing, a strict CSP.
 */
export function applyPageHeaders(c: Context): void {
  c.header("Content-Security-Policy", CONTENT_SECURITY_POLICY);
  c.header("X-Frame-Options", "DENY");
  // Page URLs carry request IDs and user codes, so no other site may see them as a referrer;
  // `same-origin` rather than `no-referrer` because under no-referrer browsers send
  // `Origin: null` on our own form posts (Fetch: serializing a request origin), which the
  // origin check would have to refuse.
  c.header("Referrer-Policy", "same-origin");
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Cross-Origin-Opener-Policy", "same-origin");
  c.header("Cache-Control", "no-store");
}

/** Render one page in the layout, with the security headers. */
export function htmlPage(
  c: Context,
  { title, body, status = 200 }: { title: string; body: PageMarkup; status?: PageStatus },
): Response | Promise<Response> {
  applyPageHeaders(c);
  const page = html`
    <!DOCTYPE html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${title}</title>
        <style>${raw(STYLESHEET)}</style>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <main id="main">
    <h1>${title}</h1>
    ${body}
        </main>
      </body>
    </html>
  `;
  return c.html(page, status);
}

/** A redirect from a page (303: the browser follows with GET), with the pages' headers. */
export function pageRedirect(c: Context, location: string): Response {
  applyPageHeaders(c);
  return c.redirect(location, 303);
}

/** A refusal a page shows as an HTML error page (never JSON, never a redirect). */
export class PageError extends Error {
  /** `message` is shown to the user: say what went wrong and what to do. */
  constructor(
    readonly status: PageStatus,
    message: string,
    readonly title = "Something went wrong",
  ) {
    super(message);
    this.name = "PageError";
  }
}

/** The HTML error page for a status and message. */
export function errorPage(
  c: Context,
  status: PageStatus,
  message: string,
  title = "Something went wrong",
): Response | Promise<Response> {
  return htmlPage(c, { title, status, body: html`<p class="error" role="alert">${message}</p>` });
}

/**
 * Wrap a page handler so its refusals render as HTML: a PageError as its page, a MatrixError
 * (rate limits, invalid usernames, locked accounts) as a page with its status and message and,
 * for 429, a Retry-After header. Anything else propagates (the app answers 500).
 */
export function page(handler: Handler): Handler {
  return async (c, next) => {
    try {
      return await handler(c, next);
    } catch (error) {
      if (error instanceof PageError) return errorPage(c, error.status, error.message, error.title);
      if (error instanceof MatrixError) {
        const retryAfterMs = error.extra.retry_after_ms;
        if (error.status === 429 && typeof retryAfterMs === "number") {
          c.header("Retry-After", String(Math.ceil(retryAfterMs / 1000)));
          return errorPage(c, 429, "Too many attempts. Wait a little and try again.");
        }
        const status = ([400, 403, 404, 409, 413, 429].includes(error.status)
          ? error.status
          : 500) as PageStatus;
        return errorPage(c, status, error.message);
      }
      throw error;
    }
  };
}
