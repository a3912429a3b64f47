/**
 * Redirect URIs and client metadata a client may not register, through the registration
 * endpoint over real HTTP: each case of the spec's "Redirect URI validation" rules and the tricks
 * around them (other hosts, prefixes and suffixes, fragments, userinfo, wrong private-use
 * schemes, loopback ports, javascript: and data:) is accepted or refused, and a refusal writes
 * nothing.
 */
import { assert, assertEquals } from "../assert.ts";
import { OAUTH_ENDPOINTS } from "../../domain/oauth/oauth_paths.ts";
import { kvSnapshot, registration, withServer } from "./oauth_attack_support.ts";

/** One redirect URI registration and the answer the rules give it. */
interface RedirectCase {
  why: string;
  applicationType: "web" | "native";
  uri: string;
  /** `true` accepted (201); else the error code of the refusal. */
  expect: true | "invalid_redirect_uri";
}

const web = (why: string, uri: string, expect: RedirectCase["expect"]): RedirectCase => ({
  why,
  applicationType: "web",
  uri,
  expect,
});
const native = (why: string, uri: string, expect: RedirectCase["expect"]): RedirectCase => ({
  why,
  applicationType: "native",
  uri,
  expect,
});
const REFUSED = "invalid_redirect_uri" as const;

/** The spec's "Redirect URI validation" examples and the tricks around them. */
const REDIRECT_CASES: readonly RedirectCase[] = [
  // Web clients: https on the client_uri host or a subdomain, a query allowed.
  web("the client_uri host", "https://example.com/callback", true),
  web("a subdomain", "https://app.example.com/callback", true),
  web("another port, a query", "https://example.com:5173/?query=value", true),
  web("javascript:", "javascript:alert(document.cookie)", REFUSED),
  web("data:", "data:text/html,<script>alert(1)</script>", REFUSED),
  web("plain http to another host", "http://evil.example/cb", REFUSED),
  web("https to another host", "https://evil.example/cb", REFUSED),
  web("client host as a prefix of another", "https://example.com.evil.example/cb", REFUSED),
  web("client host as a suffix without a dot", "https://evilexample.com/cb", REFUSED),
  web("a fragment", "https://example.com/cb#frag", REFUSED),
  web("an empty fragment", "https://example.com/cb#", REFUSED),
  web("http on the client host", "http://example.com/callback", REFUSED),
  web("loopback for a web client", "http://localhost/", REFUSED),
  web("user and password", "https://user:pass@example.com/cb", REFUSED),
  web("a user name", "https://example.com@evil.example/cb", REFUSED),
  web("an IP literal", "https://93.184.216.34/cb", REFUSED),
  web("a private-use scheme for a web client", "com.example.app:/callback", REFUSED),
  web("a relative reference", "/callback", REFUSED),
  web("not a URI", "not a uri", REFUSED),
  // Native clients: a private-use scheme (the reversed client_uri host as its prefix, no
  // authority), loopback without a port, or a claimed https URI.
  native("reversed host and more", "com.example.app:/callback", true),
  native("the reversed host", "com.example:/", true),
  native("no slash after the scheme", "com.example:callback", true),
  native("loopback by name", "http://localhost/callback", true),
  native("IPv4 loopback", "http://127.0.0.1/callback", true),
  native("IPv6 loopback", "http://[::1]/callback", true),
  native("a claimed https URI", "https://example.com/callback", true),
  native("a scheme not from the client host", "example:/callback", REFUSED),
  native("another host's reversed name", "com.evil:/callback", REFUSED),
  native("the reversed host without a dot after it", "com.exampleevil:/callback", REFUSED),
  native("an authority after the scheme", "com.example.app://callback", REFUSED),
  native("a fragment on a private-use scheme", "com.example.app:/callback#x", REFUSED),
  native("loopback with a port", "http://localhost:1234/callback", REFUSED),
  native("loopback with an explicit default port", "http://127.0.0.1:80/callback", REFUSED),
  native("https loopback", "https://localhost/callback", REFUSED),
  native("a name under localhost's spelling", "http://localhost.evil.example/callback", REFUSED),
  native("http to another host", "http://evil.example/callback", REFUSED),
  native("javascript:", "javascript:alert(1)", REFUSED),
  native("data:", "data:text/plain,hi", REFUSED),
];

Deno.test("registration: every redirect URI is accepted or refused as the spec's rules say", async () => {
  await withServer(async (server) => {
    const wrong: string[] = [];
    for (const c of REDIRECT_CASES) {
      const before = await kvSnapshot(server.inner.kv);
      const res = await server.request("POST", OAUTH_ENDPOINTS.registration, {
        body: registration({ application_type: c.applicationType, redirect_uris: [c.uri] }),
      });
      const got = res.status === 201 ? true : res.body?.error;
      if (got !== c.expect) {
        wrong.push(
          `${c.applicationType} ${c.why} (${c.uri}): expected ${c.expect}, got ${res.status} ` +
            JSON.stringify(res.body),
        );
        continue;
      }
      if (c.expect === true) {
        assert(typeof res.body.client_id === "string", `${c.uri}: no client_id`);
        assertEquals(res.body.redirect_uris, [c.uri]);
      } else {
        // The message says why, and the refusal wrote nothing.
        assert(
          typeof res.body.error_description === "string" && res.body.error_description.length > 0,
          `${c.uri}: no error_description`,
        );
        assertEquals(await kvSnapshot(server.inner.kv), before, `${c.uri}: refused but wrote`);
      }
    }
    assertEquals(wrong, []);
  });
});

Deno.test("registration: one bad redirect URI among good ones refuses the whole client", async () => {
  await withServer(async (server) => {
    const res = await server.request("POST", OAUTH_ENDPOINTS.registration, {
      body: registration({
        redirect_uris: ["https://example.com/callback", "https://evil.example/callback"],
      }),
    });
    assertEquals([res.status, res.body.error], [400, "invalid_redirect_uri"]);
  });
});

Deno.test("registration: client metadata off the client_uri host or not https is refused", async () => {
  await withServer(async (server) => {
    const cases: [string, Record<string, unknown>][] = [
      ["no client_uri", { client_uri: undefined }],
      ["client_uri over http", { client_uri: "http://example.com" }],
      ["client_uri with userinfo", { client_uri: "https://user@example.com" }],
      ["logo on another host", { logo_uri: "https://evil.example/logo.png" }],
      ["logo over http", { logo_uri: "http://example.com/logo.png" }],
      ["terms on another host", { tos_uri: "https://evil.example/tos" }],
      ["policy as javascript:", { policy_uri: "javascript:alert(1)" }],
      ["a client secret method", { token_endpoint_auth_method: "client_secret_basic" }],
      ["the implicit grant", { grant_types: ["implicit"] }],
      ["a token response type", { response_types: ["token"] }],
      ["redirect URIs not a list", { redirect_uris: "https://example.com/callback" }],
    ];
    for (const [why, overrides] of cases) {
      const body = registration(overrides);
      for (const [key, value] of Object.entries(overrides)) {
        if (value === undefined) delete body[key];
      }
      const res = await server.request("POST", OAUTH_ENDPOINTS.registration, { body });
      assertEquals(res.status, 400, `${why}: ${JSON.stringify(res.body)}`);
      assert(
        res.body.error === "invalid_client_metadata" || res.body.error === "invalid_redirect_uri",
        `${why}: ${JSON.stringify(res.body)}`,
      );
    }
    // Malformed bodies are OAuth errors too, never a 500.
    for (const raw of ["", "{", "[]", "null", '"text"', '{"client_uri": 5}']) {
      const res = await server.request("POST", OAUTH_ENDPOINTS.registration, { body: raw });
      assert(res.status === 400, `${JSON.stringify(raw)}: ${res.status}`);
    }
  });
});
