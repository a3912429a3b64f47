/**
 * A tiny browser for the HTML flows in tests: a cookie jar, GET and form POST (with the Origin
 * header a browser sends), redirects followed by hand (so tests can stop at the redirect to a
 * client's redirect URI), and helpers to pull forms, fields and links out of the markup.
 * Works over any fetcher: an in-process app (`server.app.request`) or a listening server's
 * `fetch` with a base URL.
 */

import { OAUTH_PAGES } from "../../../domain/oauth/oauth_paths.ts";

/** Something that answers requests: `(path or URL, init) => Response`. */
export type Fetcher = (input: string, init: RequestInit) => Response | Promise<Response>;

/** One answer: status, headers, the body as text, and where it redirects (absolute URL). */
export interface BrowserResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The Location header resolved against the request URL, when there is one. */
  location?: string;
  /** The URL this answer came from. */
  url: string;
}

/** A parsed `<form>`: its method, action (absolute URL) and fields (hidden ones included). */
export interface ParsedForm {
  method: string;
  action: string;
  fields: Record<string, string>;
  /** The submit buttons' `name=value` pairs (a form may have Allow and Deny). */
  buttons: { name: string; value: string; label: string }[];
}

/** Options of a Browser. */
export interface BrowserOptions {
  /**
   * The server's origin as the browser sees it, e.g. `http://localhost` for an in-process app
   * (whose request URLs are `http://localhost/...`) or `http://127.0.0.1:PORT`.
   */
  origin?: string;
  /** Send this Origin on POSTs instead of the server's (cross-site attempts). */
  postOrigin?: string | null;
}

/** A cookie-keeping client. Cookies are kept per name (tests talk to one host). */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly origin: string;
  postOrigin: string | null;

  /** Over a fetcher (an in-process app's `request`, or `fetch`). */
  constructor(private readonly fetcher: Fetcher, options: BrowserOptions = {}) {
    this.origin = options.origin ?? "http://localhost";
    this.postOrigin = options.postOrigin === undefined ? this.origin : options.postOrigin;
  }

  /** A GET of a path or URL on the server. */
  get(pathOrUrl: string, headers: Record<string, string> = {}): Promise<BrowserResponse> {
    return this.send("GET", pathOrUrl, undefined, headers);
  }

  /** A form POST (`application/x-www-form-urlencoded`) with the browser's Origin. */
  post(
    pathOrUrl: string,
    fields: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<BrowserResponse> {
    const all: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      ...headers,
    };
    if (this.postOrigin !== null && !("origin" in headers)) all.origin = this.postOrigin;
    return this.send("POST", pathOrUrl, new URLSearchParams(fields).toString(), all);
  }

  /**
   * Submit a parsed form: its fields, overridden by `changes`, plus the named button (by its
   * value or label, e.g. "allow"), or else the first button as pressing Enter would.
   */
  submit(
    form: ParsedForm,
    changes: Record<string, string> = {},
    button?: string,
  ): Promise<BrowserResponse> {
    const fields = { ...form.fields, ...changes };
    // Without a named button, the first one, as a browser's implicit submission (Enter) does.
    const chosen = button === undefined
      ? form.buttons[0]
      : form.buttons.find((b) =>
        b.value === button || b.label.toLowerCase() === button.toLowerCase()
      );
    if (button !== undefined && !chosen) {
      throw new Error(`no button ${button} in form to ${form.action}`);
    }
    if (chosen?.name) fields[chosen.name] = chosen.value;
    if (form.method === "get") {
      const url = new URL(form.action);
      for (const [k, v] of Object.entries(fields)) url.searchParams.set(k, v);
      return this.get(url.toString());
    }
    return this.post(form.action, fields);
  }

  /**
   * Follow redirects from `response` (GETs, as browsers do after 302/303) while they stay on
   * the server's origin, at most `limit` hops; returns the last answer (a page, or the
   * redirect leaving the server, e.g. to a client's redirect URI: read its `location`).
   */
  async follow(response: BrowserResponse, limit = 10): Promise<BrowserResponse> {
    let current = response;
    for (let i = 0; i < limit; i++) {
      if (current.location === undefined || current.status < 300 || current.status > 399) {
        return current;
      }
      if (new URL(current.location).origin !== this.origin) return current;
      current = await this.get(current.location);
    }
    throw new Error("too many redirects");
  }

  /** GET and follow redirects on the server. */
  async open(pathOrUrl: string): Promise<BrowserResponse> {
    return this.follow(await this.get(pathOrUrl));
  }

  private async send(
    method: string,
    pathOrUrl: string,
    body: string | undefined,
    headers: Record<string, string>,
  ): Promise<BrowserResponse> {
    const url = new URL(pathOrUrl, this.origin);
    if (url.origin !== this.origin) throw new Error(`refusing to send to ${url.origin}`);
    const all: Record<string, string> = { ...headers };
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    if (cookie && !("cookie" in headers)) all.cookie = cookie;
    const res = await this.fetcher(url.toString(), {
      method,
      headers: all,
      body,
      redirect: "manual",
    });
    for (const line of res.headers.getSetCookie()) this.keepCookie(line);
    const text = await res.text();
    const location = res.headers.get("location");
    return {
      status: res.status,
      headers: res.headers,
      text,
      url: url.toString(),
      ...(location !== null ? { location: new URL(location, url).toString() } : {}),
    };
  }

  private keepCookie(line: string): void {
    const [pair, ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq < 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attributes.some((a) => {
      const [k, v] = a.trim().split("=");
      return (k.toLowerCase() === "max-age" && Number(v) <= 0) ||
        (k.toLowerCase() === "expires" && Date.parse(v) <= Date.now());
    });
    if (expired || value === "") this.cookies.delete(name);
    else this.cookies.set(name, value);
  }
}

/** Decode the few HTML entities hono/html's escaping produces. */
export function decodeEntities(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

function attribute(tag: string, name: string): string | undefined {
  const match = tag.match(new RegExp(`\\s${name}\\s*=\\s*"([^"]*)"`, "i"));
  return match ? decodeEntities(match[1]) : undefined;
}

/** Every `<form>` of a page, in order; actions resolved against `pageUrl`. */
export function forms(page: BrowserResponse | string, pageUrl?: string): ParsedForm[] {
  const text = typeof page === "string" ? page : page.text;
  const base = pageUrl ?? (typeof page === "string" ? "http://localhost/" : page.url);
  const out: ParsedForm[] = [];
  for (const match of text.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const [, formTag, inner] = match;
    const fields: Record<string, string> = {};
    for (const input of inner.matchAll(/<input\b[^>]*>/gi)) {
      const name = attribute(input[0], "name");
      if (name === undefined) continue;
      const type = (attribute(input[0], "type") ?? "text").toLowerCase();
      if ((type === "checkbox" || type === "radio") && !/\schecked\b/i.test(input[0])) continue;
      fields[name] = attribute(input[0], "value") ?? "";
    }
    const buttons = [...inner.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)].map((b) => ({
      name: attribute(b[0], "name") ?? "",
      value: attribute(b[0], "value") ?? "",
      label: decodeEntities(b[2].replace(/<[^>]*>/g, "").trim()),
    }));
    out.push({
      method: (attribute(formTag, "method") ?? "get").toLowerCase(),
      action: new URL(attribute(formTag, "action") ?? "", base).toString(),
      fields,
      buttons,
    });
  }
  return out;
}

/** The one form whose action path contains `pathPart` (throws when absent). */
export function formTo(page: BrowserResponse, pathPart: string): ParsedForm {
  const found = forms(page).find((f) => new URL(f.action).pathname.includes(pathPart));
  if (!found) {
    throw new Error(`no form to ${pathPart} on ${page.url} (${page.status}): ${page.text}`);
  }
  return found;
}

/** The CSRF token of a page's first form that has one. */
export function csrfToken(page: BrowserResponse): string {
  const token = forms(page).map((f) => f.fields.csrf).find((t) => t !== undefined);
  if (token === undefined) throw new Error(`no CSRF field on ${page.url}`);
  return token;
}

/** Every link (`<a href>`) of a page, resolved against its URL. */
export function links(page: BrowserResponse): string[] {
  return [...page.text.matchAll(/<a\b[^>]*\shref="([^"]*)"/gi)].map((m) =>
    new URL(decodeEntities(m[1]), page.url).toString()
  );
}

/**
 * Parameters of a redirect to a client: the query, or the fragment for response_mode=fragment.
 */
export function redirectParams(location: string): URLSearchParams {
  const url = new URL(location);
  return new URLSearchParams(url.hash ? url.hash.slice(1) : url.search);
}

/**
 * Sign the browser in with the login page's password form (`next` a local path to land on):
 * returns the answer to the form post, not followed (a 303 to `next` on success).
 */
export async function passwordSignIn(
  browser: Browser,
  username: string,
  password: string,
  next?: string,
): Promise<BrowserResponse> {
  const query = next !== undefined ? `?next=${encodeURIComponent(next)}` : "";
  const page = await browser.get(`${OAUTH_PAGES.login}${query}`);
  return browser.submit(formTo(page, OAUTH_PAGES.login), { username, password });
}
