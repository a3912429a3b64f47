/**
 * Redirect URIs (spec: "Redirect URI validation", MSC2966, RFC 8252): which ones a client may
 * register, and whether the one in an authorization request is one the client registered.
 *
 * URIs are read twice: by the WHATWG URL parser (what a browser will do with the URI: the host
 * after IDNA and lowercasing) and as the raw string (what the client registered, compared
 * exactly later). The raw reading catches what the parser hides: an explicit default port
 * (`http://localhost:80/` parses with no port), tabs and newlines it silently drops, and
 * backslashes it turns into slashes.
 */

/** The hosts of a native client's loopback redirect URI (RFC 8252 §7.3). */
const LOOPBACK_HOSTS: readonly string[] = Object.freeze(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Schemes with a meaning of their own in browsers or the URL standard, never a private-use
 * scheme, whatever a client's host reversed happens to be.
 */
const SPECIAL_SCHEMES: readonly string[] = Object.freeze([
  "javascript",
  "data",
  "vbscript",
  "file",
  "blob",
  "about",
  "ftp",
  "ws",
  "wss",
]);

/** Longest URI registered (browsers and proxies cut longer ones anyway). */
export const MAX_URI_LENGTH = 2000;

/** A URI read both ways: the parser's view and the raw string's authority. */
export interface ParsedUri {
  /** As the parser reads it (hostname lowercased, IDNA applied). */
  url: URL;
  /** Lowercased scheme without the colon. */
  scheme: string;
  /** The raw authority after `//`, undefined when the URI has none. */
  authority?: string;
  /** Whether the raw authority names a user (`user@` or `user:pass@`). */
  userinfo: boolean;
  /** Whether the raw authority spells out a port (even an empty or a default one). */
  explicitPort: boolean;
  /** Whether the raw string has a fragment part (even an empty `#`). */
  fragment: boolean;
}

/**
 * Read `raw` as an absolute URI; a string saying why when it is not one, or when it carries
 * characters whose reading differs between parsers (whitespace, controls, backslashes,
 * non-ASCII: internationalised hosts must be registered in their punycode form).
 */
export function parseUri(raw: string): ParsedUri | string {
  if (raw.length > MAX_URI_LENGTH) return `is longer than ${MAX_URI_LENGTH} characters`;
  if (/[^\x21-\x7e]/.test(raw)) {
    return "contains whitespace, control or non-ASCII characters (write hosts in punycode)";
  }
  if (raw.includes("\\")) return "contains a backslash";
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw);
  if (scheme === null) return "is not an absolute URI";
  const url = URL.parse(raw);
  if (url === null) return "is not a valid URI";
  const afterScheme = raw.slice(scheme[0].length);
  let authority: string | undefined;
  let userinfo = false;
  let explicitPort = false;
  if (afterScheme.startsWith("//")) {
    authority = afterScheme.slice(2).split(/[/?#]/, 1)[0];
    userinfo = authority.includes("@");
    const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
    const hostEnd = hostPort.startsWith("[") ? hostPort.indexOf("]") + 1 : 0;
    explicitPort = hostPort.indexOf(":", hostEnd) !== -1;
  }
  return {
    url,
    scheme: scheme[1].toLowerCase(),
    authority,
    userinfo,
    explicitPort,
    fragment: raw.includes("#"),
  };
}

/** Whether `host` is `base` or a subdomain of it (both as the URL parser gives them). */
export function hostWithin(host: string, base: string): boolean {
  return host === base || host.endsWith(`.${base}`);
}

/** Whether a parsed hostname is an IP address literal (v4, or v6 in brackets). */
export function isIpLiteral(hostname: string): boolean {
  // The WHATWG parser rewrites every IPv4 form (octal, hex, short) to dotted decimal.
  return hostname.startsWith("[") || /^\d+\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Whether a parsed hostname is a loopback or local name a public client cannot own. */
export function isLocalHost(hostname: string): boolean {
  return hostname === "localhost" || hostname.endsWith(".localhost") ||
    LOOPBACK_HOSTS.includes(hostname);
}

/**
 * Why `raw` may not be a redirect URI of a client of `applicationType` whose `client_uri` host
 * is `clientHost`; null when it may. The rules: never a fragment; web clients (and native
 * clients using a claimed https URI) use `https` without user info on the client_uri host or a
 * subdomain of it; native clients may instead use a private-use scheme that is the reversed
 * client_uri host or starts with it (`com.example.app:/cb` for `example.com`), without an
 * authority, or `http` on a loopback host with no port (any port is accepted later).
 */
export function redirectUriProblem(
  raw: string,
  applicationType: "web" | "native",
  clientHost: string,
): string | null {
  const parsed = parseUri(raw);
  if (typeof parsed === "string") return parsed;
  if (parsed.fragment) return "must not have a fragment";
  if (parsed.userinfo) return "must not have user information (user@) in it";
  if (parsed.scheme === "https") {
    return hostWithin(parsed.url.hostname, clientHost)
      ? null
      : `must be on the client_uri host ${clientHost} or a subdomain of it`;
  }
  if (applicationType === "web") return "must use https (the client is a web client)";
  if (parsed.scheme === "http") {
    if (!LOOPBACK_HOSTS.includes(parsed.url.hostname) || parsed.authority === undefined) {
      return "may use http only on localhost, 127.0.0.1 or [::1] (native loopback redirect)";
    }
    // Compared on the raw authority: the parser would lowercase it and drop a port of 80.
    const rawHost = parsed.authority;
    if (!LOOPBACK_HOSTS.includes(rawHost)) {
      return parsed.explicitPort
        ? "must not register a port on a loopback URI (any port is accepted when authorizing)"
        : "must name the loopback host as localhost, 127.0.0.1 or [::1] exactly";
    }
    return null;
  }
  if (SPECIAL_SCHEMES.includes(parsed.scheme)) {
    return `must not use the ${parsed.scheme}: scheme`;
  }
  if (parsed.authority !== undefined) {
    return "must not have an authority (//) after a private-use scheme: use scheme:/path";
  }
  const reversed = clientHost.split(".").reverse();
  const schemeParts = parsed.scheme.split(".");
  const prefixed = reversed.length <= schemeParts.length &&
    reversed.every((part, i) => schemeParts[i] === part);
  if (!prefixed) {
    return `must use a private-use scheme starting with ${reversed.join(".")}` +
      " (the client_uri host reversed)";
  }
  return null;
}

/** A loopback URI with a port, split around the port: `http://<host>`, the port, the rest. */
const LOOPBACK_WITH_PORT =
  /^(http:\/\/(?:localhost|127\.0\.0\.1|\[::1\])):([1-9][0-9]{0,4})([/?].*)?$/;

/** A loopback URI without a port (the form a native client registers). */
const LOOPBACK_WITHOUT_PORT = /^http:\/\/(?:localhost|127\.0\.0\.1|\[::1\])(?:[/?].*)?$/;

/**
 * Whether `requested` (from an authorization request) is one of the client's `registered`
 * redirect URIs: the exact string, except that a registered loopback URI without a port matches
 * the same URI with any port (RFC 8252 §7.3: the client listens on whatever port it gets).
 */
export function redirectUriMatches(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  const withPort = LOOPBACK_WITH_PORT.exec(requested);
  if (withPort === null || Number(withPort[2]) > 65535) return false;
  const portless = withPort[1] + (withPort[3] ?? "");
  return registered.some((uri) => uri === portless && LOOPBACK_WITHOUT_PORT.test(uri));
}
