/**
 * Client registration rules (MSC2966 / the spec's "Redirect URI validation"), table-driven:
 * every redirect URI of the issue and the spec's examples, refused or accepted as the rules
 * say, with the reason in the refusal; then the other metadata rules and the loopback-port
 * matching of authorization requests.
 */
import assert from "node:assert/strict";
import {
  clientMetadataResponse,
  MAX_REDIRECT_URIS,
  validateClientMetadata,
} from "../../../domain/oauth/client_metadata.ts";
import { redirectUriMatches } from "../../../domain/oauth/redirect_uris.ts";

const NOW = 1_700_000_000_000;
const CLIENT_URI = "https://example.com/";

/** One redirect URI case: registered by a client of `app` with client_uri example.com. */
interface RedirectCase {
  app: "web" | "native";
  uri: string;
  /** undefined: accepted; otherwise the refusal's description must match. */
  refused?: RegExp;
}

const FRAGMENT = /fragment/;
const HTTPS = /must use https/;
const HOST = /client_uri host example\.com/;
const USERINFO = /user information/;
const CHARS = /whitespace, control or non-ASCII/;
const SCHEME = /private-use scheme starting with com\.example/;
const AUTHORITY = /authority/;
const LOOPBACK_PORT = /port on a loopback URI/;
const LOOPBACK_ONLY = /http only on localhost/;
const LOOPBACK_EXACT = /exactly/;

const REDIRECT_CASES: RedirectCase[] = [
  // Web clients: https on the client_uri host or a subdomain of it (the spec's own examples).
  { app: "web", uri: "https://example.com/callback" },
  { app: "web", uri: "https://app.example.com/callback" },
  { app: "web", uri: "https://example.com:5173/?query=value" },
  { app: "web", uri: "https://deep.sub.example.com/cb?a=1&b=2" },
  // Hosts compare as a browser reads them: case-insensitively, punycode as registered.
  { app: "web", uri: "https://EXAMPLE.com/cb" },
  { app: "web", uri: "https://xn--bcher-kva.example.com/cb" },
  { app: "web", uri: "https://bücher.example.com/cb", refused: CHARS },
  { app: "web", uri: "https://example.com/callback#fragment", refused: FRAGMENT },
  { app: "web", uri: "https://example.com/callback#", refused: FRAGMENT },
  { app: "web", uri: "http://example.com/callback", refused: HTTPS },
  { app: "web", uri: "http://localhost/", refused: HTTPS },
  { app: "web", uri: "http://evil.example/cb", refused: HTTPS },
  { app: "web", uri: "https://evil.example/cb", refused: HOST },
  // Mismatched hosts that only look alike.
  { app: "web", uri: "https://example.com.evil.example/cb", refused: HOST },
  { app: "web", uri: "https://evilexample.com/cb", refused: HOST },
  { app: "web", uri: "https://example.co/cb", refused: HOST },
  { app: "web", uri: "https://example.com./cb", refused: HOST },
  { app: "web", uri: "https://93.184.216.34/cb", refused: HOST },
  { app: "web", uri: "https://[2001:db8::1]/cb", refused: HOST },
  { app: "web", uri: "https://localhost/cb", refused: HOST },
  // User information, including the classic host confusion.
  { app: "web", uri: "https://user@example.com/cb", refused: USERINFO },
  { app: "web", uri: "https://user:pass@example.com/cb", refused: USERINFO },
  { app: "web", uri: "https://example.com@evil.example/cb", refused: USERINFO },
  { app: "web", uri: "https://example.com\\@evil.example/cb", refused: /backslash/ },
  // Characters a parser drops or rewrites, so the registered string is not what is visited.
  { app: "web", uri: "https://exam\tple.com/cb", refused: CHARS },
  { app: "web", uri: " https://example.com/cb", refused: CHARS },
  { app: "web", uri: "https://example.com/c b", refused: CHARS },
  { app: "web", uri: "https://example.com/cb\n", refused: CHARS },
  // Not URLs a browser should be sent to at all.
  { app: "web", uri: "javascript:alert(1)", refused: HTTPS },
  { app: "web", uri: "data:text/html,hello", refused: HTTPS },
  { app: "web", uri: "/callback", refused: /not an absolute URI/ },
  { app: "web", uri: "https://", refused: /not a valid URI/ },
  { app: "web", uri: "com.example.app:/callback", refused: HTTPS },
  { app: "web", uri: `https://example.com/${"a".repeat(2000)}`, refused: /longer than/ },

  // Native clients, private-use schemes: the reversed client_uri host as the scheme's prefix,
  // no authority (the spec's examples first).
  { app: "native", uri: "com.example.app:/callback" },
  { app: "native", uri: "com.example:/" },
  { app: "native", uri: "com.example:callback" },
  { app: "native", uri: "com.example.app.debug:/cb?x=1" },
  { app: "native", uri: "COM.Example.App:/callback" },
  { app: "native", uri: "example:/callback", refused: SCHEME },
  { app: "native", uri: "com.example.app://callback", refused: AUTHORITY },
  { app: "native", uri: "com.example://example.com/cb", refused: AUTHORITY },
  { app: "native", uri: "org.example.app:/callback", refused: SCHEME },
  { app: "native", uri: "com.evil:/callback", refused: SCHEME },
  { app: "native", uri: "com.exampleevil:/callback", refused: SCHEME },
  { app: "native", uri: "com:/callback", refused: SCHEME },
  { app: "native", uri: "com.example.app:/callback#x", refused: FRAGMENT },
  { app: "native", uri: "javascript:alert(1)", refused: /javascript: scheme/ },
  { app: "native", uri: "data:text/html,hello", refused: /data: scheme/ },
  { app: "native", uri: "file:///etc/passwd", refused: /file: scheme/ },
  { app: "native", uri: "vbscript:msgbox", refused: /vbscript: scheme/ },
  // Native clients, loopback: http on localhost, 127.0.0.1 or [::1] with no port registered.
  { app: "native", uri: "http://localhost/callback" },
  { app: "native", uri: "http://127.0.0.1/callback" },
  { app: "native", uri: "http://[::1]/callback" },
  { app: "native", uri: "http://127.0.0.1/" },
  { app: "native", uri: "http://localhost?x=1" },
  { app: "native", uri: "http://localhost:1234/callback", refused: LOOPBACK_PORT },
  // The parser drops a default port; the registered string still names one.
  { app: "native", uri: "http://localhost:80/callback", refused: LOOPBACK_PORT },
  { app: "native", uri: "http://localhost:/callback", refused: LOOPBACK_PORT },
  { app: "native", uri: "http://[::1]:8080/callback", refused: LOOPBACK_PORT },
  { app: "native", uri: "https://localhost/callback", refused: HOST },
  { app: "native", uri: "https://127.0.0.1/callback", refused: HOST },
  { app: "native", uri: "http://127.1/callback", refused: LOOPBACK_EXACT },
  { app: "native", uri: "http://LOCALHOST/callback", refused: LOOPBACK_EXACT },
  { app: "native", uri: "http://0x7f.0.0.1/callback", refused: LOOPBACK_EXACT },
  { app: "native", uri: "http://user@localhost/callback", refused: USERINFO },
  { app: "native", uri: "http://localhost.evil.example/callback", refused: LOOPBACK_ONLY },
  { app: "native", uri: "http://192.168.1.10/callback", refused: LOOPBACK_ONLY },
  { app: "native", uri: "http://0.0.0.0/callback", refused: LOOPBACK_ONLY },
  { app: "native", uri: "http://evil.example/cb", refused: LOOPBACK_ONLY },
  { app: "native", uri: "http://example.com/callback", refused: LOOPBACK_ONLY },
  // Native clients, claimed https URIs: the web rules.
  { app: "native", uri: "https://example.com/callback" },
  { app: "native", uri: "https://app.example.com/callback" },
  { app: "native", uri: "https://evil.example/callback", refused: HOST },
  { app: "native", uri: "https://example.com/callback#x", refused: FRAGMENT },
];

function registration(extra: Record<string, unknown>): Record<string, unknown> {
  return {
    client_uri: CLIENT_URI,
    client_name: "Example",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
    ...extra,
  };
}

Deno.test("redirect URIs are refused or accepted as MSC2966 says", async (t) => {
  for (const { app, uri, refused } of REDIRECT_CASES) {
    await t.step(`${app} ${JSON.stringify(uri.slice(0, 60))}`, () => {
      const body = registration({ application_type: app, redirect_uris: [uri] });
      const result = validateClientMetadata(body, NOW);
      if (refused === undefined) {
        assert.ok(result.ok, result.ok ? "" : result.description);
        assert.deepEqual(result.client.redirectUris, [uri]);
      } else {
        assert.ok(!result.ok, "accepted");
        assert.equal(result.error, "invalid_redirect_uri");
        assert.match(result.description, refused);
        // The refusal names the URI it refused.
        assert.ok(result.description.startsWith("redirect_uri "));
      }
    });
  }
});

/**
 * The shapes real clients register: Element X Android (its OidcConfig: client_uri element.io,
 * `io.element:/callback`, logo, terms and policy on element.io; its debug tooling also opens
 * `io.element.android:/`), Element Web (a query on its redirect URI) and an app on loopback.
 */
Deno.test("the registrations of Element X, Element Web and a loopback app are accepted", () => {
  const shapes = [
    {
      application_type: "native",
      client_name: "Element",
      client_uri: "https://element.io",
      logo_uri: "https://element.io/mobile-icon.png",
      tos_uri: "https://element.io/user-terms-of-service",
      policy_uri: "https://element.io/privacy",
      redirect_uris: ["io.element:/callback", "io.element.android:/"],
    },
    {
      application_type: "web",
      client_uri: "https://app.element.io/",
      redirect_uris: ["https://app.element.io/?no_universal_links=true"],
    },
    {
      application_type: "native",
      client_uri: "https://app.example.org/",
      redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
    },
  ];
  for (const shape of shapes) {
    const result = validateClientMetadata(registration(shape), NOW);
    assert.ok(result.ok, result.ok ? "" : `${shape.client_uri}: ${result.description}`);
  }
});

Deno.test("one bad redirect URI among good ones refuses the registration", () => {
  const result = validateClientMetadata(
    registration({ redirect_uris: ["https://example.com/ok", "https://evil.example/cb"] }),
    NOW,
  );
  assert.ok(!result.ok);
  assert.equal(result.error, "invalid_redirect_uri");
  assert.match(result.description, /evil\.example/);
});

/** One metadata case: fields on top of a valid web registration. */
interface MetadataCase {
  name: string;
  body: unknown;
  /** undefined: accepted; else [error, description pattern]. */
  refused?: ["invalid_client_metadata" | "invalid_redirect_uri", RegExp];
}

const WEB_REDIRECT = { redirect_uris: ["https://example.com/cb"] };
const web = (extra: Record<string, unknown>) => registration({ ...WEB_REDIRECT, ...extra });
const META = "invalid_client_metadata" as const;
const REDIR = "invalid_redirect_uri" as const;
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

const METADATA_CASES: MetadataCase[] = [
  { name: "a complete web registration", body: web({}) },
  {
    name: "logo, terms and policy on the client_uri host or a subdomain",
    body: web({
      logo_uri: "https://cdn.example.com/logo.png",
      tos_uri: "https://example.com/tos",
      policy_uri: "https://legal.example.com:8443/policy?lang=en",
    }),
  },
  { name: "client_uri missing", body: web({ client_uri: undefined }), refused: [META, /required/] },
  { name: "client_uri not a string", body: web({ client_uri: 42 }), refused: [META, /string/] },
  {
    name: "client_uri not https",
    body: web({ client_uri: "http://example.com/" }),
    refused: [META, /client_uri must use https/],
  },
  {
    name: "client_uri with user information",
    body: web({ client_uri: "https://me@example.com/" }),
    refused: [META, /client_uri must not have user information/],
  },
  {
    name: "client_uri on an IPv4 literal",
    body: web({ client_uri: "https://93.184.216.34/", redirect_uris: ["https://93.184.216.34/"] }),
    refused: [META, /not an IP address/],
  },
  {
    name: "client_uri on an IPv6 literal",
    body: web({ client_uri: "https://[2001:db8::1]/" }),
    refused: [META, /not an IP address/],
  },
  {
    name: "client_uri on localhost",
    body: web({ client_uri: "https://localhost/", redirect_uris: ["https://localhost/cb"] }),
    refused: [META, /localhost/],
  },
  {
    name: "client_uri with a trailing-dot host",
    body: web({ client_uri: "https://example.com./" }),
    refused: [META, /dot/],
  },
  {
    // Reversed, a single label is a scheme anyone could claim (`javascript:` from javascript/).
    name: "client_uri on a single-label host",
    body: { ...web({ client_uri: "https://javascript/" }), application_type: "native" },
    refused: [META, /fully qualified/],
  },
  {
    name: "client_uri on a punycode host",
    body: web({
      client_uri: "https://xn--bcher-kva.example/",
      redirect_uris: ["https://app.xn--bcher-kva.example/cb"],
    }),
  },
  {
    name: "logo_uri on another host",
    body: web({ logo_uri: "https://evil.example/logo.png" }),
    refused: [META, /logo_uri must be on the client_uri host/],
  },
  {
    name: "logo_uri over http",
    body: web({ logo_uri: "http://example.com/logo.png" }),
    refused: [META, /logo_uri must use https/],
  },
  {
    name: "tos_uri on a look-alike host",
    body: web({ tos_uri: "https://example.com.evil.example/tos" }),
    refused: [META, /tos_uri must be on the client_uri host/],
  },
  {
    name: "policy_uri with user information",
    body: web({ policy_uri: "https://a@example.com/policy" }),
    refused: [META, /policy_uri must not have user information/],
  },
  {
    name: "policy_uri as javascript:",
    body: web({ policy_uri: "javascript:alert(1)" }),
    refused: [META, /policy_uri must use https/],
  },
  {
    name: "a confidential client",
    body: web({ token_endpoint_auth_method: "client_secret_basic" }),
    refused: [META, /token_endpoint_auth_method must be "none"/],
  },
  {
    name: "token_endpoint_auth_method omitted: registered as none",
    body: web({ token_endpoint_auth_method: undefined }),
  },
  {
    name: "the implicit grant",
    body: web({ grant_types: ["implicit"] }),
    refused: [META, /"implicit" is not supported/],
  },
  {
    name: "the password grant",
    body: web({ grant_types: ["authorization_code", "password"] }),
    refused: [META, /"password" is not supported/],
  },
  {
    name: "client credentials",
    body: web({ grant_types: ["client_credentials"] }),
    refused: [META, /not supported/],
  },
  { name: "no grant types", body: web({ grant_types: [] }), refused: [META, /empty/] },
  {
    name: "only the refresh grant",
    body: web({ grant_types: ["refresh_token"], response_types: [] }),
    refused: [META, /issues tokens/],
  },
  {
    name: "grant_types not an array",
    body: web({ grant_types: "authorization_code" }),
    refused: [META, /array of strings/],
  },
  {
    name: "response type token (implicit)",
    body: web({ response_types: ["token"] }),
    refused: [META, /only contain "code"/],
  },
  {
    name: "response types code id_token",
    body: web({ response_types: ["code", "id_token"] }),
    refused: [META, /only contain "code"/],
  },
  {
    name: "authorization_code without response type code",
    body: web({ response_types: [] }),
    refused: [META, /exactly when/],
  },
  {
    name: "an unknown application type",
    body: web({ application_type: "desktop" }),
    refused: [META, /application_type/],
  },
  {
    name: "the authorization code grant without redirect URIs",
    body: web({ redirect_uris: undefined }),
    refused: [REDIR, /redirect_uris is required/],
  },
  {
    name: "an empty redirect URI list",
    body: web({ redirect_uris: [] }),
    refused: [REDIR, /redirect_uris is required/],
  },
  {
    name: "redirect_uris as a string",
    body: web({ redirect_uris: "https://example.com/cb" }),
    refused: [REDIR, /array of strings/],
  },
  {
    name: "redirect_uris holding a number",
    body: web({ redirect_uris: [1] }),
    refused: [REDIR, /array of strings/],
  },
  {
    name: "too many redirect URIs",
    body: web({
      redirect_uris: Array.from(
        { length: MAX_REDIRECT_URIS + 1 },
        (_, i) => `https://example.com/${i}`,
      ),
    }),
    refused: [REDIR, /at most/],
  },
  {
    name: "a device-grant-only client without redirect URIs",
    body: {
      client_uri: CLIENT_URI,
      application_type: "native",
      grant_types: [DEVICE_GRANT, "refresh_token"],
      token_endpoint_auth_method: "none",
    },
  },
  {
    name: "a device-grant-only client with redirect URIs",
    body: {
      client_uri: CLIENT_URI,
      grant_types: [DEVICE_GRANT],
      redirect_uris: ["https://example.com/cb"],
    },
    refused: [META, /does not include authorization_code/],
  },
  {
    name: "a device-grant-only client asking for response type code",
    body: { client_uri: CLIENT_URI, grant_types: [DEVICE_GRANT], response_types: ["code"] },
    refused: [META, /exactly when/],
  },
  {
    name: "a localized name and URIs: accepted, ignored",
    body: web({
      "client_name#fr": "Exemple",
      "client_uri#fr": "https://evil.example/",
      "logo_uri#de-CH": "https://evil.example/logo.png",
    }),
  },
  {
    name: "a localized field that is not a string",
    body: web({ "client_name#fr": 3 }),
    refused: [META, /client_name#fr must be a string/],
  },
  {
    name: "a # in a field that cannot be localized",
    body: web({ "redirect_uris#fr": ["https://evil.example/"] }),
    refused: [META, /not a localizable field/],
  },
  {
    name: "unknown metadata is ignored (RFC 7591 §2)",
    body: web({ contacts: ["a@example.com"], software_id: "x", jwks_uri: "https://x.example/" }),
  },
  {
    name: "a client name with a right-to-left override",
    body: web({ client_name: "Example\u202egnp.exe" }),
    refused: [META, /control characters/],
  },
  {
    name: "a client name with a C1 control",
    body: web({ client_name: "Example\u009b" }),
    refused: [META, /control characters/],
  },
  {
    name: "a client name in any script, emoji sequences included",
    body: web({ client_name: "Пример 例子 👩\u200d💻" }),
  },
  { name: "an empty client name", body: web({ client_name: " " }), refused: [META, /client_name/] },
  {
    name: "a client name not a string",
    body: web({ client_name: ["x"] }),
    refused: [META, /client_name must be a string/],
  },
  { name: "a body that is null", body: null, refused: [META, /JSON object/] },
  { name: "a body that is an array", body: [], refused: [META, /JSON object/] },
  { name: "a body that is a string", body: "x", refused: [META, /JSON object/] },
];

Deno.test("client metadata is refused or accepted as RFC 7591 and MSC2966 say", async (t) => {
  for (const { name, body, refused } of METADATA_CASES) {
    await t.step(name, () => {
      const result = validateClientMetadata(body, NOW);
      if (refused === undefined) {
        assert.ok(result.ok, result.ok ? "" : result.description);
      } else {
        assert.ok(!result.ok, "accepted");
        assert.equal(result.error, refused[0]);
        assert.match(result.description, refused[1]);
      }
    });
  }
});

Deno.test("omitted fields take the defaults, and the answer repeats what was registered", () => {
  const result = validateClientMetadata(
    { client_uri: CLIENT_URI, redirect_uris: ["https://example.com/cb", "https://example.com/cb"] },
    NOW,
  );
  assert.ok(result.ok);
  assert.deepEqual(result.client, {
    applicationType: "web",
    clientUri: CLIENT_URI,
    redirectUris: ["https://example.com/cb"],
    grantTypes: ["authorization_code"],
    responseTypes: ["code"],
    tokenEndpointAuthMethod: "none",
    createdAt: NOW,
  });
  assert.deepEqual(clientMetadataResponse({ clientId: "abc", ...result.client }), {
    client_id: "abc",
    client_id_issued_at: NOW / 1000,
    application_type: "web",
    client_uri: CLIENT_URI,
    redirect_uris: ["https://example.com/cb"],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
});

Deno.test("a localized name is not what the consent page shows", () => {
  const result = validateClientMetadata(web({ "client_name#fr": "Exemple" }), NOW);
  assert.ok(result.ok);
  assert.equal(result.client.clientName, "Example");
  assert.ok(!("client_name#fr" in result.client));
});

const REGISTERED = [
  "https://example.com/cb",
  "http://localhost/cb",
  "http://127.0.0.1/",
  "http://[::1]/cb?x=1",
  "com.example.app:/cb",
];

const MATCH_CASES: [requested: string, matches: boolean][] = [
  ["https://example.com/cb", true],
  ["com.example.app:/cb", true],
  ["http://localhost/cb", true],
  // Exact string comparison: no normalisation of any kind.
  ["https://example.com/cb/", false],
  ["https://example.com/cb?x=1", false],
  ["https://example.com/CB", false],
  ["https://EXAMPLE.com/cb", false],
  ["https://example.com:443/cb", false],
  ["https://example.com:8443/cb", false],
  ["https://example.com/cb#x", false],
  ["https://example.com/./cb", false],
  ["com.example.app://cb", false],
  // Loopback: any port, the rest identical.
  ["http://localhost:1234/cb", true],
  ["http://localhost:1/cb", true],
  ["http://localhost:65535/cb", true],
  ["http://127.0.0.1:5000/", true],
  ["http://[::1]:8080/cb?x=1", true],
  ["http://localhost:65536/cb", false],
  ["http://localhost:0/cb", false],
  ["http://localhost:01234/cb", false],
  ["http://localhost:/cb", false],
  ["http://localhost:1234/cb2", false],
  ["http://localhost:1234/cb#x", false],
  ["http://localhost:1234/cb?y", false],
  ["http://127.0.0.1:5000", false],
  ["http://[::1]:8080/cb", false],
  ["http://127.0.0.1:1234/cb", false],
  ["http://LOCALHOST:1234/cb", false],
  ["https://localhost:1234/cb", false],
  ["http://localhost:1234@evil.example/cb", false],
  ["http://localhost:1234.evil.example/cb", false],
  ["http://evil.example:1234/cb", false],
];

Deno.test("authorization redirect URIs match exactly, loopback ports aside", async (t) => {
  for (const [requested, matches] of MATCH_CASES) {
    await t.step(`${requested} ${matches ? "matches" : "does not match"}`, () => {
      assert.equal(redirectUriMatches(REGISTERED, requested), matches);
    });
  }
});

Deno.test("a port is free only when the loopback URI was registered without one", () => {
  // Not registrable (the rules refuse it), but matching must not widen it if one were stored.
  assert.equal(redirectUriMatches(["http://localhost:1234/cb"], "http://localhost:5678/cb"), false);
  assert.equal(redirectUriMatches(["http://localhost:1234/cb"], "http://localhost:1234/cb"), true);
  // A web URI registered on a host called localhost never gets the loopback exception.
  assert.equal(redirectUriMatches(["https://localhost/cb"], "https://localhost:1234/cb"), false);
  assert.equal(redirectUriMatches([], "http://localhost:1234/cb"), false);
});
