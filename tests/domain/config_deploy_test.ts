/**
 * Configuration where the server runs: Deno Deploy (no shared disk, TLS served by the platform,
 * Deno.serve's default address), KV Connect URLs (a fleet on denokv), and the long-poll cap.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../domain/config.ts";
import { isKvConnectUrl } from "../../domain/config_placement.ts";
import { clientBaseUrl, delegatedServer } from "../../domain/discovery.ts";

const DEPLOY = { dev: false, deploy: true };
/** What every Deploy configuration names: the server and the URL Deploy serves it at. */
const SITE = { TESSERA_SERVER_NAME: "example.org", TESSERA_PUBLIC_BASEURL: "https://example.org" };
const PROD = { dev: false };

/** Assert loadConfig fails on `variable` with a one-line message matching `pattern`. */
function assertRefused(
  env: Record<string, string>,
  options: { dev: boolean; deploy?: boolean },
  variable: string,
  pattern: RegExp,
): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env, options);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError for ${JSON.stringify(env)}`);
  assert.equal(caught.variable, variable);
  assert.doesNotMatch(caught.message, /\n/);
  assert.match(caught.message, pattern);
  return caught;
}

Deno.test("Deno Deploy: the app's own KV, Deno.serve's default address", () => {
  const config = loadConfig(SITE, DEPLOY);
  assert.equal(config.kvPath, undefined);
  assert.equal(config.hostname, "0.0.0.0");
  assert.equal(config.port, 8000);
  // The wake-ups of long-polls ride kv.watch there, which crosses isolates.
  assert.equal(config.wake.mode, "watch");
  // What the operator sets still wins.
  const set = loadConfig({ ...SITE, PORT: "9000", TESSERA_HOSTNAME: "::" }, DEPLOY);
  assert.equal(set.port, 9000);
  assert.equal(set.hostname, "::");
});

Deno.test("Deno Deploy: the server name and public URL are required, then served right", () => {
  const error = assertRefused({}, DEPLOY, "TESSERA_SERVER_NAME", /required on Deno Deploy/);
  assert.deepEqual(error.problems.map((p) => p.split(":")[0]), [
    "TESSERA_SERVER_NAME",
    "TESSERA_PUBLIC_BASEURL",
  ]);
  assertRefused(
    { TESSERA_SERVER_NAME: "example.org" },
    DEPLOY,
    "TESSERA_PUBLIC_BASEURL",
    /https:\/\/ URL the app is served at/,
  );
  assertRefused(
    { TESSERA_SERVER_NAME: "example.org", TESSERA_PUBLIC_BASEURL: "http://example.org" },
    DEPLOY,
    "TESSERA_PUBLIC_BASEURL",
    /https:\/\/ URL on Deno Deploy/,
  );
  // Peers and clients are sent to Deploy's HTTPS on 443, not to the port the process listens on.
  const config = loadConfig(
    { TESSERA_SERVER_NAME: "example.org", TESSERA_PUBLIC_BASEURL: "https://matrix.example.org" },
    DEPLOY,
  );
  assert.equal(clientBaseUrl(config), "https://matrix.example.org");
  assert.equal(delegatedServer(config), "matrix.example.org:443");
});

Deno.test("Deno Deploy: a KV path of any kind is refused, naming why", () => {
  for (const path of ["./data/tessera.kv", ":memory:", "/tmp/t.kv", "https://kv.example.org"]) {
    assertRefused({ ...SITE, TESSERA_KV_PATH: path }, DEPLOY, "TESSERA_KV_PATH", /leave it unset/);
  }
});

Deno.test("Deno Deploy: TLS files are refused (Deploy serves HTTPS)", () => {
  const error = assertRefused(
    { ...SITE, TESSERA_TLS_CERT: "c.pem", TESSERA_TLS_KEY: "k.pem" },
    DEPLOY,
    "TESSERA_TLS_CERT",
    /Deploy serves HTTPS/,
  );
  // Every problem is reported, one line each.
  assert.deepEqual(error.problems.map((p) => p.split(":")[0]), [
    "TESSERA_TLS_CERT",
    "TESSERA_TLS_KEY",
  ]);
  // Outside Deploy they are how the server serves HTTPS itself.
  const local = loadConfig({ TESSERA_TLS_CERT: "c.pem", TESSERA_TLS_KEY: "k.pem" }, PROD);
  assert.deepEqual(local.tls, { certPath: "c.pem", keyPath: "k.pem" });
});

Deno.test("Deno Deploy: a CA file shipped with the app is accepted (Deploy can read it)", () => {
  const config = loadConfig({ ...SITE, TESSERA_FEDERATION_CA_FILE: "certs/ca.pem" }, DEPLOY);
  assert.equal(config.federation.caFile, "certs/ca.pem");
});

Deno.test("a KV Connect URL: accepted with DENO_KV_ACCESS_TOKEN, refused without", () => {
  const url = "https://denokv.internal:4512";
  const config = loadConfig({ TESSERA_KV_PATH: url, DENO_KV_ACCESS_TOKEN: "secret" }, PROD);
  assert.equal(config.kvPath, url);
  // Several processes on one remote database: kv.watch crosses them.
  assert.equal(config.wake.mode, "watch");
  const missing = assertRefused(
    { TESSERA_KV_PATH: url },
    PROD,
    "DENO_KV_ACCESS_TOKEN",
    /required when TESSERA_KV_PATH is a KV Connect URL/,
  );
  assert.doesNotMatch(missing.message, /secret/);
  assertRefused(
    { TESSERA_KV_PATH: url, DENO_KV_ACCESS_TOKEN: "" },
    PROD,
    "DENO_KV_ACCESS_TOKEN",
    /required/,
  );
});

Deno.test("a KV Connect URL with credentials or without a host is refused, not echoed", () => {
  for (const url of ["https://user:pw@kv.example.org/db", "https://", "http://:4512"]) {
    const error = assertRefused(
      { TESSERA_KV_PATH: url, DENO_KV_ACCESS_TOKEN: "t" },
      PROD,
      "TESSERA_KV_PATH",
      /expected a KV Connect URL/,
    );
    assert.doesNotMatch(error.message, /pw@/);
  }
});

Deno.test("KV Connect URLs are told from file paths", () => {
  assert.ok(isKvConnectUrl("https://api.deno.com/v2/databases/0123/connect"));
  assert.ok(isKvConnectUrl("http://denokv.internal:4512"));
  assert.ok(isKvConnectUrl("HTTPS://kv.example.org"));
  assert.ok(!isKvConnectUrl("./data/tessera.kv"));
  assert.ok(!isKvConnectUrl("/var/lib/tessera/https/x.kv"));
  assert.ok(!isKvConnectUrl(":memory:"));
});

Deno.test("TESSERA_LONG_POLL_MAX_MS: 120 s by default, 1 s to 120 s when set", () => {
  assert.equal(loadConfig({}, PROD).longPollMaxMs, 120_000);
  assert.equal(loadConfig(SITE, DEPLOY).longPollMaxMs, 120_000);
  assert.equal(
    loadConfig({ ...SITE, TESSERA_LONG_POLL_MAX_MS: "25000" }, DEPLOY).longPollMaxMs,
    25_000,
  );
  for (const bad of ["999", "120001", "30s", "-1", "1e4"]) {
    assertRefused(
      { TESSERA_LONG_POLL_MAX_MS: bad },
      PROD,
      "TESSERA_LONG_POLL_MAX_MS",
      /from 1000 to 120000/,
    );
  }
});
