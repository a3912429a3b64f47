/**
 * OAuth 2.0 discovery and RFC 7591 dynamic client registration over the HTTP routes: the
 * metadata documents (and their 404 when OAuth is off), registration answers, refusals that
 * write nothing, body limits, the per-address rate limit, and a client registered through one
 * process being usable from another on the same KV.
 */
import assert from "node:assert/strict";
import { startTestServer } from "../test_server.ts";

const BASE = "https://matrix.example.org";
const METADATA_PATHS = [
  "/_matrix/client/v1/auth_metadata",
  "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
  "/.well-known/openid-configuration",
  "/.well-known/oauth-authorization-server",
];
const ISSUER_PATH = "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer";
const REGISTER = "/oauth2/register";

/** What Element X / matrix-js-sdk send for a native client. */
const NATIVE_CLIENT = {
  client_name: "Example app",
  client_uri: "https://example.com/",
  application_type: "native",
  redirect_uris: ["com.example.app:/callback", "http://127.0.0.1/callback"],
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
  token_endpoint_auth_method: "none",
  logo_uri: "https://example.com/logo.png",
  "client_name#fr": "Appli exemple",
};

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function storedClients(server: Server): Promise<number> {
  let count = 0;
  for await (const _ of server.kv.list({ prefix: ["oauthclientid_client"] })) count++;
  return count;
}

Deno.test("the metadata documents agree and carry every field the spec requires", async () => {
  const server = await startTestServer({ TESSERA_PUBLIC_BASEURL: BASE });
  try {
    const answers = await Promise.all(METADATA_PATHS.map((p) => server.request("GET", p)));
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.deepEqual(answer.body, answers[0].body);
      assert.match(answer.headers.get("cache-control") ?? "", /max-age=\d+/);
    }
    const metadata = answers[0].body;
    assert.equal(metadata.issuer, `${BASE}/`);
    assert.equal(metadata.authorization_endpoint, `${BASE}/oauth2/authorize`);
    assert.equal(metadata.token_endpoint, `${BASE}/oauth2/token`);
    assert.equal(metadata.revocation_endpoint, `${BASE}/oauth2/revoke`);
    assert.equal(metadata.registration_endpoint, `${BASE}${REGISTER}`);
    assert.equal(metadata.device_authorization_endpoint, `${BASE}/oauth2/device_authorization`);
    assert.equal(metadata.account_management_uri, `${BASE}/account`);
    assert.deepEqual(metadata.response_types_supported, ["code"]);
    assert.deepEqual(metadata.response_modes_supported, ["query", "fragment"]);
    assert.deepEqual(metadata.code_challenge_methods_supported, ["S256"]);
    assert.deepEqual(metadata.token_endpoint_auth_methods_supported, ["none"]);
    assert.deepEqual(metadata.grant_types_supported, [
      "authorization_code",
      "refresh_token",
      "urn:ietf:params:oauth:grant-type:device_code",
    ]);
    assert.deepEqual(metadata.prompt_values_supported, ["create"]);
    assert.deepEqual(metadata.account_management_actions_supported, [
      "org.matrix.profile",
      "org.matrix.devices_list",
      "org.matrix.device_view",
      "org.matrix.device_delete",
      "org.matrix.account_deactivate",
      "org.matrix.cross_signing_reset",
    ]);
    assert.ok(metadata.scopes_supported.includes("urn:matrix:client:api:*"));
    assert.ok(metadata.scopes_supported.includes("openid"));
    assert.deepEqual(metadata.id_token_signing_alg_values_supported, ["ES256"]);
    // Every endpoint is under the issuer.
    for (const [field, value] of Object.entries(metadata)) {
      if (field.endsWith("_endpoint") || field.endsWith("_uri")) {
        assert.ok(String(value).startsWith(metadata.issuer), field);
      }
    }
    const issuer = await server.request("GET", ISSUER_PATH);
    assert.equal(issuer.status, 200);
    assert.deepEqual(issuer.body, { issuer: `${BASE}/` });
    // Browser clients read it cross-origin.
    const cors = await server.app.request(METADATA_PATHS[0], {
      headers: { origin: "https://app.example.com" },
    });
    assert.equal(cors.headers.get("access-control-allow-origin"), "*");
  } finally {
    server.close();
  }
});

Deno.test("every endpoint and page the metadata names is served", async () => {
  const server = await startTestServer({ TESSERA_PUBLIC_BASEURL: BASE });
  try {
    const metadata = (await server.request("GET", METADATA_PATHS[0])).body;
    const served: [field: string, method: string][] = [
      ["authorization_endpoint", "GET"],
      ["token_endpoint", "POST"],
      ["revocation_endpoint", "POST"],
      ["registration_endpoint", "POST"],
      ["device_authorization_endpoint", "POST"],
      ["jwks_uri", "GET"],
      ["userinfo_endpoint", "GET"],
      ["account_management_uri", "GET"],
    ];
    for (const [field, method] of served) {
      const path = new URL(metadata[field]).pathname;
      const res = await server.app.request(path, { method, redirect: "manual" });
      await res.body?.cancel();
      // Requests without parameters are refused, but by the endpoint, not as an unknown path.
      assert.notEqual(res.status, 404, field);
      assert.notEqual(res.status, 405, field);
      assert.ok(res.status < 500, `${field}: ${res.status}`);
    }
  } finally {
    server.close();
  }
});

Deno.test("prompt=create is offered only when registration is open", async () => {
  const server = await startTestServer({ TESSERA_REGISTRATION: "closed" });
  try {
    const metadata = await server.request("GET", METADATA_PATHS[0]);
    assert.equal(metadata.status, 200);
    assert.equal("prompt_values_supported" in metadata.body, false);
    // Without a public base URL the issuer comes from the server name.
    assert.equal(metadata.body.issuer, "http://example.org:8448/");
  } finally {
    server.close();
  }
});

Deno.test("with OAuth off, discovery answers 404 M_UNRECOGNIZED and registration is not there", async () => {
  const server = await startTestServer({ TESSERA_OAUTH: "off" });
  try {
    for (const path of [...METADATA_PATHS, ISSUER_PATH]) {
      const answer = await server.request("GET", path);
      assert.equal(answer.status, 404, path);
      assert.equal(answer.body.errcode, "M_UNRECOGNIZED", path);
    }
    const register = await server.request("POST", REGISTER, { body: NATIVE_CLIENT });
    assert.equal(register.status, 404);
    assert.equal(register.body.errcode, "M_UNRECOGNIZED");
    assert.equal(await storedClients(server), 0);
  } finally {
    server.close();
  }
});

Deno.test("registration answers 201 with the registered metadata and stores the client", async () => {
  const now = 1_800_000_000_000;
  const server = await startTestServer({}, { now: () => now });
  try {
    const answer = await server.request("POST", REGISTER, { body: NATIVE_CLIENT });
    assert.equal(answer.status, 201);
    assert.equal(answer.headers.get("cache-control"), "no-store");
    const { client_id: clientId, ...rest } = answer.body;
    assert.match(clientId, /^[A-Za-z0-9_-]{22}$/);
    assert.deepEqual(rest, {
      client_id_issued_at: now / 1000,
      client_name: "Example app",
      client_uri: "https://example.com/",
      application_type: "native",
      redirect_uris: ["com.example.app:/callback", "http://127.0.0.1/callback"],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      logo_uri: "https://example.com/logo.png",
    });
    const stored = await server.deps.oauthClients.get(clientId);
    assert.equal(stored?.clientName, "Example app");
    assert.deepEqual(stored?.redirectUris, NATIVE_CLIENT.redirect_uris);
    // Each registration is a new client.
    const again = await server.request("POST", REGISTER, { body: NATIVE_CLIENT });
    assert.equal(again.status, 201);
    assert.notEqual(again.body.client_id, clientId);
    assert.equal(await storedClients(server), 2);
    // Unknown and malformed client IDs are simply unknown.
    assert.equal(await server.deps.oauthClients.get("nope"), null);
    assert.equal(await server.deps.oauthClients.get("x".repeat(5000)), null);
    assert.equal(await server.deps.oauthClients.get("../../etc"), null);
  } finally {
    server.close();
  }
});

Deno.test("refused registrations say why, in RFC 7591's shape, and store nothing", async () => {
  const server = await startTestServer();
  try {
    const cases: [body: unknown, error: string, pattern: RegExp][] = [
      [
        { ...NATIVE_CLIENT, redirect_uris: ["https://evil.example/cb"] },
        "invalid_redirect_uri",
        /evil\.example.*client_uri host example\.com/,
      ],
      [
        { ...NATIVE_CLIENT, application_type: "web" },
        "invalid_redirect_uri",
        /must use https/,
      ],
      [
        { ...NATIVE_CLIENT, redirect_uris: ["http://localhost:8080/cb"] },
        "invalid_redirect_uri",
        /port/,
      ],
      [
        { ...NATIVE_CLIENT, redirect_uris: ["com.example.app:/cb#frag"] },
        "invalid_redirect_uri",
        /fragment/,
      ],
      [{ ...NATIVE_CLIENT, redirect_uris: undefined }, "invalid_redirect_uri", /required/],
      [{ ...NATIVE_CLIENT, client_uri: "http://example.com/" }, "invalid_client_metadata", /https/],
      [
        { ...NATIVE_CLIENT, logo_uri: "https://evil.example/logo.png" },
        "invalid_client_metadata",
        /logo_uri/,
      ],
      [
        { ...NATIVE_CLIENT, token_endpoint_auth_method: "client_secret_post" },
        "invalid_client_metadata",
        /none/,
      ],
      [{ ...NATIVE_CLIENT, grant_types: ["implicit"] }, "invalid_client_metadata", /implicit/],
      [[NATIVE_CLIENT], "invalid_client_metadata", /JSON object/],
      ["not json", "invalid_client_metadata", /not valid JSON/],
      ["", "invalid_client_metadata", /not valid JSON/],
      [
        `{"client_uri":${"[".repeat(200)}${"]".repeat(200)}}`,
        "invalid_client_metadata",
        /nested/,
      ],
    ];
    for (const [body, error, pattern] of cases) {
      const answer = await server.request("POST", REGISTER, { body });
      assert.equal(answer.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(answer.body.error, error, answer.body.error_description);
      assert.match(answer.body.error_description, pattern);
      assert.equal(answer.headers.get("cache-control"), "no-store");
    }
    assert.equal(await storedClients(server), 0);
  } finally {
    server.close();
  }
});

Deno.test("a registration body over 64 KiB is refused unread with 413 M_TOO_LARGE", async () => {
  const server = await startTestServer();
  try {
    const body = { ...NATIVE_CLIENT, software_statement: "x".repeat(70_000) };
    const answer = await server.request("POST", REGISTER, { body });
    assert.equal(answer.status, 413);
    assert.equal(answer.body.errcode, "M_TOO_LARGE");
    assert.equal(await storedClients(server), 0);
  } finally {
    server.close();
  }
});

Deno.test("registration is rate limited per address: 429 with retry_after_ms", async () => {
  let now = 1_000_000;
  const server = await startTestServer({}, { now: () => now });
  const from = (hostname: string) =>
    server.app.request(REGISTER, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(NATIVE_CLIENT),
    }, { remoteAddr: { transport: "tcp", hostname, port: 5000 } });
  try {
    for (let i = 0; i < 20; i++) assert.equal((await from("192.0.2.7")).status, 201);
    const limited = await from("192.0.2.7");
    assert.equal(limited.status, 429);
    const body = await limited.json();
    assert.equal(body.errcode, "M_LIMIT_EXCEEDED");
    assert.ok(body.retry_after_ms > 0);
    assert.equal(await storedClients(server), 20);
    // Another address is not affected; time refills the first.
    assert.equal((await from("192.0.2.8")).status, 201);
    now += body.retry_after_ms;
    assert.equal((await from("192.0.2.7")).status, 201);
  } finally {
    server.close();
  }
});

Deno.test("a client registered through one process is known to another on the same KV", async () => {
  const kv = await Deno.openKv(":memory:");
  const first = await startTestServer({}, {}, kv);
  const second = await startTestServer({}, {}, kv);
  try {
    const answer = await first.request("POST", REGISTER, { body: NATIVE_CLIENT });
    assert.equal(answer.status, 201);
    const seen = await second.deps.oauthClients.get(answer.body.client_id);
    assert.equal(seen?.clientUri, "https://example.com/");
  } finally {
    first.close();
    second.close();
    kv.close();
  }
});
