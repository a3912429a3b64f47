import assert from "node:assert/strict";
import {
  CONFIG_DEFAULTS,
  ConfigError,
  configFromDenoEnv,
  loadConfig,
  unknownTesseraVariables,
} from "../../domain/config.ts";

const DEV = { dev: true };
const PROD = { dev: false };
// The spec's test seed; its last character carries non-zero padding bits.
const SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
const SPEC_SEED_HEX = "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** Assert loadConfig fails with a one-line message naming `variable`. */
function assertConfigError(
  env: Record<string, string | undefined>,
  variable: string,
  pattern: RegExp,
  options = PROD,
): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env, options);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError for ${JSON.stringify(env)}`);
  assert.equal(caught.variable, variable);
  assert.ok(caught.message.startsWith(`${variable}: `), caught.message);
  assert.doesNotMatch(caught.message, /\n/);
  assert.match(caught.message, pattern);
  return caught;
}

Deno.test("defaults in dev mode: open registration", () => {
  const config = loadConfig({}, DEV);
  assert.deepEqual({ ...config }, {
    dev: true,
    serverName: "localhost:8008",
    port: 8008,
    hostname: "127.0.0.1",
    kvPath: "./data/tessera.kv",
    publicBaseUrl: undefined,
    registration: "open",
    registrationToken: undefined,
    tls: undefined,
    longPollMaxMs: 120_000,
    signingKeySeed: undefined,
    rateLimits: true,
    rateLimitFlushMs: 100,
    outboundAllowPrivate: false,
    outboundTlsVerify: true,
    guestAccess: false,
    federation: { enabled: true, allowPrivate: false },
    admins: [],
    wake: { mode: "poll", pollMs: 100 },
    jobs: { leaseMs: 60_000 },
    oauth: { enabled: true, passwordLogin: true },
    media: {
      maxUploadBytes: 52_428_800,
      quotaBytes: 1_073_741_824,
      legacy: "frozen",
      urlPreviews: true,
      urlPreviewAllowPrivate: false,
      maxPixels: 32_000_000,
    },
  });
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(CONFIG_DEFAULTS));
});

Deno.test("defaults outside dev mode: closed registration", () => {
  const config = loadConfig({}, PROD);
  assert.equal(config.dev, false);
  assert.equal(config.registration, "closed");
  assert.equal(config.port, 8008);
  assert.equal(config.serverName, "localhost:8008");
});

Deno.test("Deno Deploy: unset KV path stays unset; elsewhere an explicit one is kept", () => {
  const deployEnv = {
    TESSERA_SERVER_NAME: "example.org",
    TESSERA_PUBLIC_BASEURL: "https://example.org",
  };
  assert.equal(loadConfig(deployEnv, { dev: false, deploy: true }).kvPath, undefined);
  // On Deploy an explicit path is refused (tests/domain/config_deploy_test.ts).
  assert.equal(loadConfig({ TESSERA_KV_PATH: ":memory:" }, PROD).kvPath, ":memory:");
  assert.equal(loadConfig({ TESSERA_KV_PATH: "/tmp/x.kv" }, PROD).kvPath, "/tmp/x.kv");
});

Deno.test("PORT is honoured and TESSERA_PORT wins over it", () => {
  assert.equal(loadConfig({ PORT: "9000" }, PROD).port, 9000);
  assert.equal(loadConfig({ TESSERA_PORT: "9001" }, PROD).port, 9001);
  assert.equal(loadConfig({ PORT: "9000", TESSERA_PORT: "9001" }, PROD).port, 9001);
  // A bad PORT shadowed by TESSERA_PORT does not matter; an unshadowed one does.
  assert.equal(loadConfig({ PORT: "nope", TESSERA_PORT: "9001" }, PROD).port, 9001);
  assertConfigError({ PORT: "nope" }, "PORT", /expected an integer from 1 to 65535, got "nope"/);
  assert.equal(loadConfig({ TESSERA_PORT: "", PORT: "9002" }, PROD).port, 9002);
});

Deno.test("bad ports name TESSERA_PORT", () => {
  const e = assertConfigError({ TESSERA_PORT: "abc" }, "TESSERA_PORT", /.*/);
  assert.equal(e.message, 'TESSERA_PORT: expected an integer from 1 to 65535, got "abc"');
  for (const bad of ["0", "65536", "-1", "80.5", " 80", "1e3", "123456"]) {
    assertConfigError({ TESSERA_PORT: bad }, "TESSERA_PORT", /1 to 65535/);
  }
  assert.equal(loadConfig({ TESSERA_PORT: "65535" }, PROD).port, 65535);
});

Deno.test("server name is validated with the identifier grammar", () => {
  assert.equal(loadConfig({ TESSERA_SERVER_NAME: "example.com" }, PROD).serverName, "example.com");
  assert.equal(loadConfig({ TESSERA_SERVER_NAME: "[::1]:8448" }, PROD).serverName, "[::1]:8448");
  assertConfigError({ TESSERA_SERVER_NAME: "exa mple.com" }, "TESSERA_SERVER_NAME", /DNS name/);
  assertConfigError({ TESSERA_SERVER_NAME: "example.com:0" }, "TESSERA_SERVER_NAME", /port/);
  assertConfigError({ TESSERA_SERVER_NAME: "::1" }, "TESSERA_SERVER_NAME", /brackets/);
});

Deno.test("hostname accepts IPs and names, strips IPv6 brackets", () => {
  assert.equal(loadConfig({ TESSERA_HOSTNAME: "0.0.0.0" }, PROD).hostname, "0.0.0.0");
  assert.equal(loadConfig({ TESSERA_HOSTNAME: "[::]" }, PROD).hostname, "::");
  assert.equal(loadConfig({ TESSERA_HOSTNAME: "localhost" }, PROD).hostname, "localhost");
  assertConfigError({ TESSERA_HOSTNAME: "local host" }, "TESSERA_HOSTNAME", /got "local host"/);
});

Deno.test("registration modes and token", () => {
  assert.equal(loadConfig({ TESSERA_REGISTRATION: "closed" }, DEV).registration, "closed");
  assert.equal(loadConfig({ TESSERA_REGISTRATION: "open" }, PROD).registration, "open");
  const token = loadConfig(
    { TESSERA_REGISTRATION: "token", TESSERA_REGISTRATION_TOKEN: "s3cret-token" },
    PROD,
  );
  assert.equal(token.registration, "token");
  assert.equal(token.registrationToken, "s3cret-token");
  // A token alone implies token mode rather than being ignored.
  assert.equal(loadConfig({ TESSERA_REGISTRATION_TOKEN: "abc" }, DEV).registration, "token");
});

Deno.test("registration errors name the variable", () => {
  assertConfigError(
    { TESSERA_REGISTRATION: "maybe" },
    "TESSERA_REGISTRATION",
    /expected "open", "token" or "closed", got "maybe"/,
  );
  assertConfigError(
    { TESSERA_REGISTRATION: "token" },
    "TESSERA_REGISTRATION_TOKEN",
    /required when TESSERA_REGISTRATION is "token"/,
  );
  assertConfigError(
    { TESSERA_REGISTRATION: "open", TESSERA_REGISTRATION_TOKEN: "abc" },
    "TESSERA_REGISTRATION_TOKEN",
    /TESSERA_REGISTRATION is "open"/,
  );
  const e = assertConfigError(
    { TESSERA_REGISTRATION: "token", TESSERA_REGISTRATION_TOKEN: "has space secret" },
    "TESSERA_REGISTRATION_TOKEN",
    /64 characters/,
  );
  assert.doesNotMatch(e.message, /secret/, "secrets are not echoed");
});

Deno.test("TLS cert and key: both or neither", () => {
  const both = loadConfig({ TESSERA_TLS_CERT: "c.pem", TESSERA_TLS_KEY: "k.pem" }, PROD);
  assert.deepEqual(both.tls, { certPath: "c.pem", keyPath: "k.pem" });
  assertConfigError(
    { TESSERA_TLS_CERT: "c.pem" },
    "TESSERA_TLS_KEY",
    /required when TESSERA_TLS_CERT is set/,
  );
  assertConfigError(
    { TESSERA_TLS_KEY: "k.pem" },
    "TESSERA_TLS_CERT",
    /required when TESSERA_TLS_KEY is set/,
  );
});

Deno.test("public base URL must be http(s) and loses its trailing slash", () => {
  const url = (v: string) => loadConfig({ TESSERA_PUBLIC_BASEURL: v }, PROD).publicBaseUrl;
  assert.equal(url("https://matrix.example.com/"), "https://matrix.example.com");
  assert.equal(url("http://localhost:8008"), "http://localhost:8008");
  assert.equal(url("https://example.com/matrix/"), "https://example.com/matrix");
  assertConfigError({ TESSERA_PUBLIC_BASEURL: "not a url" }, "TESSERA_PUBLIC_BASEURL", /http/);
  assertConfigError({ TESSERA_PUBLIC_BASEURL: "ftp://x.org" }, "TESSERA_PUBLIC_BASEURL", /ftp:/);
  assertConfigError(
    { TESSERA_PUBLIC_BASEURL: "https://x.org/?a=1" },
    "TESSERA_PUBLIC_BASEURL",
    /query/,
  );
  assertConfigError(
    { TESSERA_PUBLIC_BASEURL: "https://u:p@x.org" },
    "TESSERA_PUBLIC_BASEURL",
    /credentials/,
  );
});

Deno.test("signing key seed: 32 bytes of base64", () => {
  const seed = loadConfig({ TESSERA_SIGNING_KEY: SPEC_SEED }, PROD).signingKeySeed;
  assert.ok(seed instanceof Uint8Array);
  assert.equal(hex(seed), SPEC_SEED_HEX);
  const padded = loadConfig({ TESSERA_SIGNING_KEY: `${SPEC_SEED.slice(0, -1)}0=` }, PROD);
  assert.equal(hex(padded.signingKeySeed!), SPEC_SEED_HEX);
  const urlSafe = btoa(String.fromCharCode(...new Uint8Array(32).fill(0xfb)));
  const decoded = loadConfig({
    TESSERA_SIGNING_KEY: urlSafe.replaceAll("+", "-").replaceAll("/", "_"),
  }, PROD);
  assert.deepEqual(decoded.signingKeySeed, new Uint8Array(32).fill(0xfb));

  const short = assertConfigError(
    { TESSERA_SIGNING_KEY: SPEC_SEED.slice(0, 42) },
    "TESSERA_SIGNING_KEY",
    /32-byte.*got 31 bytes/,
  );
  assert.doesNotMatch(short.message, /YJDB/, "seed not echoed");
  assertConfigError(
    { TESSERA_SIGNING_KEY: `${SPEC_SEED}AAAA` },
    "TESSERA_SIGNING_KEY",
    /got 35 bytes/,
  );
  assertConfigError(
    { TESSERA_SIGNING_KEY: "not base64!" },
    "TESSERA_SIGNING_KEY",
    /outside base64/,
  );
  assertConfigError({ TESSERA_SIGNING_KEY: "A" }, "TESSERA_SIGNING_KEY", /base64 length/);
});

Deno.test("rate limits switch", () => {
  assert.equal(loadConfig({ TESSERA_RATE_LIMITS: "off" }, PROD).rateLimits, false);
  assert.equal(loadConfig({ TESSERA_RATE_LIMITS: "on" }, PROD).rateLimits, true);
  assertConfigError(
    { TESSERA_RATE_LIMITS: "yes" },
    "TESSERA_RATE_LIMITS",
    /"on" or "off", got "yes"/,
  );
});

Deno.test("guest access switch: off by default", () => {
  assert.equal(loadConfig({}, DEV).guestAccess, false);
  assert.equal(loadConfig({ TESSERA_GUEST_ACCESS: "on" }, PROD).guestAccess, true);
  assertConfigError(
    { TESSERA_GUEST_ACCESS: "yes" },
    "TESSERA_GUEST_ACCESS",
    /"on" or "off", got "yes"/,
  );
});

Deno.test("default room version: absent unless set, and only a supported one", () => {
  assert.equal("defaultRoomVersion" in loadConfig({}, PROD), false);
  assert.equal(loadConfig({ TESSERA_DEFAULT_ROOM_VERSION: "10" }, PROD).defaultRoomVersion, "10");
  assertConfigError(
    { TESSERA_DEFAULT_ROOM_VERSION: "77" },
    "TESSERA_DEFAULT_ROOM_VERSION",
    /supported room version/,
  );
});

Deno.test("outbound private-address switch: off by default", () => {
  assert.equal(loadConfig({}, DEV).outboundAllowPrivate, false);
  const on = loadConfig({ TESSERA_OUTBOUND_ALLOW_PRIVATE: "on" }, PROD);
  assert.equal(on.outboundAllowPrivate, true);
  assertConfigError(
    { TESSERA_OUTBOUND_ALLOW_PRIVATE: "true" },
    "TESSERA_OUTBOUND_ALLOW_PRIVATE",
    /"on" or "off", got "true"/,
  );
});

Deno.test("empty values count as unset; several problems are all listed", () => {
  assert.equal(
    loadConfig({ TESSERA_PORT: "", TESSERA_REGISTRATION: "" }, DEV).registration,
    "open",
  );
  const e = assertConfigError(
    { TESSERA_PORT: "x", TESSERA_RATE_LIMITS: "y" },
    "TESSERA_PORT",
    /got "x"/,
  );
  assert.equal(e.problems.length, 2);
  assert.match(e.problems[1], /^TESSERA_RATE_LIMITS: /);
});

Deno.test("TESSERA_RATE_LIMIT_FLUSH_MS: whole milliseconds from 10 to 5000", () => {
  assert.equal(loadConfig({ TESSERA_RATE_LIMIT_FLUSH_MS: "250" }, PROD).rateLimitFlushMs, 250);
  assertConfigError(
    { TESSERA_RATE_LIMIT_FLUSH_MS: "5" },
    "TESSERA_RATE_LIMIT_FLUSH_MS",
    /10 to 5000/,
  );
  assertConfigError(
    { TESSERA_RATE_LIMIT_FLUSH_MS: "1s" },
    "TESSERA_RATE_LIMIT_FLUSH_MS",
    /got "1s"/,
  );
});

Deno.test("values are quoted on one line even with newlines", () => {
  assertConfigError({ TESSERA_PORT: "80\n81" }, "TESSERA_PORT", /got "80\\n81"/);
});

Deno.test("unknownTesseraVariables flags likely typos only", () => {
  assert.deepEqual(
    unknownTesseraVariables({ TESSERA_PROT: "1", TESSERA_PORT: "1", HOME: "/", PORT: "2" }),
    ["TESSERA_PROT"],
  );
});

// Reads only: mutating Deno.env here could leak into test files running in parallel.
Deno.test("configFromDenoEnv matches loadConfig over the process environment", () => {
  const fromProcess = configFromDenoEnv(DEV);
  assert.deepEqual({ ...fromProcess }, { ...loadConfig(Deno.env.toObject(), DEV) });
  assert.ok(Object.isFrozen(fromProcess));
});

Deno.test("config: TESSERA_ADMINS and the support document's contacts and page", () => {
  const config = loadConfig({
    TESSERA_ADMINS: "@root:example.org, @ops:example.org",
    TESSERA_SUPPORT_CONTACTS: "@root:example.org,help@example.org",
  }, PROD);
  assert.deepEqual(config.admins, ["@root:example.org", "@ops:example.org"]);
  assert.deepEqual(config.support, {
    contacts: [
      { role: "m.role.admin", matrix_id: "@root:example.org" },
      { role: "m.role.admin", email_address: "help@example.org" },
    ],
  });
  assert.deepEqual(loadConfig({}, PROD).admins, []);
  assert.equal(loadConfig({}, PROD).support, undefined);
  assertConfigError({ TESSERA_ADMINS: "root" }, "TESSERA_ADMINS", /comma-separated user IDs/);
  assertConfigError(
    { TESSERA_SUPPORT_CONTACTS: "nobody" },
    "TESSERA_SUPPORT_CONTACTS",
    /user IDs or email addresses/,
  );
  assertConfigError({ TESSERA_SUPPORT_PAGE: "ftp://x" }, "TESSERA_SUPPORT_PAGE", /http/);
});

Deno.test("OAuth switches and the upstream OpenID Connect provider", () => {
  const off = loadConfig({ TESSERA_OAUTH: "off", TESSERA_PASSWORD_LOGIN: "off" }, DEV);
  assert.deepEqual(off.oauth, { enabled: false, passwordLogin: false });
  assert.equal(off.upstreamOidc, undefined);
  const upstream = loadConfig({
    TESSERA_OIDC_ISSUER: "https://id.example.com/",
    TESSERA_OIDC_CLIENT_ID: "tessera",
    TESSERA_OIDC_CLIENT_SECRET: "s3cret",
  }, DEV);
  assert.deepEqual({ ...upstream.upstreamOidc }, {
    id: "oidc",
    name: "OpenID Connect",
    issuer: "https://id.example.com",
    clientId: "tessera",
    clientSecret: "s3cret",
    scopes: "openid profile email",
    localpartClaim: "preferred_username",
    displayNameClaim: "name",
    allowPrivate: false,
  });
  assertConfigError(
    { TESSERA_OIDC_ISSUER: "https://id.example.com" },
    "TESSERA_OIDC_CLIENT_ID",
    /required/,
  );
  assertConfigError(
    {
      TESSERA_OIDC_ISSUER: "https://id.example.com",
      TESSERA_OIDC_CLIENT_ID: "c",
      TESSERA_OIDC_SCOPES: "profile",
    },
    "TESSERA_OIDC_SCOPES",
    /expected space-separated scopes including "openid"/,
  );
  assertConfigError({ TESSERA_OIDC_ID: "bad id" }, "TESSERA_OIDC_ID", /expected 1 to 255/);
  assertConfigError(
    { TESSERA_OIDC_CLIENT_ID: "tessera" },
    "TESSERA_OIDC_CLIENT_ID",
    /set, but TESSERA_OIDC_ISSUER is not/,
  );
});

Deno.test("media variables: limits, legacy mode and preview switches", () => {
  const config = loadConfig({
    TESSERA_MEDIA_MAX_UPLOAD_BYTES: "1048576",
    TESSERA_MEDIA_QUOTA_BYTES: "0",
    TESSERA_MEDIA_LEGACY: "on",
    TESSERA_URL_PREVIEWS: "off",
    TESSERA_URL_PREVIEW_ALLOW_PRIVATE: "true",
    TESSERA_MEDIA_MAX_PIXELS: "1000",
  }, PROD);
  assert.deepEqual({ ...config.media }, {
    maxUploadBytes: 1_048_576,
    quotaBytes: 0,
    legacy: "on",
    urlPreviews: false,
    urlPreviewAllowPrivate: true,
    maxPixels: 1000,
  });
  assert.ok(Object.isFrozen(config.media));
  assert.equal(loadConfig({ TESSERA_MEDIA_LEGACY: "off" }, PROD).media.legacy, "off");
  for (const bad of ["0", "-1", "1.5", "1e6", "abc", String(2 ** 36 + 1)]) {
    assertConfigError(
      { TESSERA_MEDIA_MAX_UPLOAD_BYTES: bad },
      "TESSERA_MEDIA_MAX_UPLOAD_BYTES",
      /expected a whole number/,
    );
  }
  assertConfigError({ TESSERA_MEDIA_QUOTA_BYTES: "lots" }, "TESSERA_MEDIA_QUOTA_BYTES", /whole/);
  assertConfigError({ TESSERA_MEDIA_MAX_PIXELS: "0" }, "TESSERA_MEDIA_MAX_PIXELS", /from 1/);
  assertConfigError(
    { TESSERA_MEDIA_LEGACY: "yes" },
    "TESSERA_MEDIA_LEGACY",
    /expected "frozen", "on" or "off", got "yes"/,
  );
  assertConfigError({ TESSERA_URL_PREVIEWS: "true" }, "TESSERA_URL_PREVIEWS", /"on" or "off"/);
  assertConfigError(
    { TESSERA_URL_PREVIEW_ALLOW_PRIVATE: "maybe" },
    "TESSERA_URL_PREVIEW_ALLOW_PRIVATE",
    /"true" or "false"/,
  );
});
