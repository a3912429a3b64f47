/**
 * Configuration where the server runs: Deno Deploy (no shared disk, TLS served by the platform,
 * Deno.serve's default address), KV Connect URLs (a fleet on denokv), and the long-poll cap.
 */
import assert from "node:assert/strict";
import { ConfigError, isKvConnectUrl, loadConfig } from "../../domain/config.ts";

const DEPLOY = { dev: false, deploy: true };
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
  const config = loadConfig({}, DEPLOY);
  assert.equal(config.kvPath, undefined);
  assert.equal(config.hostname, "0.0.0.0");
  assert.equal(config.port, 8000);
  // The wake-ups of long-polls ride kv.watch there, which crosses isolates.
  assert.equal(config.wake.mode, "watch");
  // What the operator sets still wins.
  const set = loadConfig({ PORT: "9000", TESSERA_HOSTNAME: "::" }, DEPLOY);
  assert.equal(set.port, 9000);
  assert.equal(set.hostname, "::");
});

Deno.test("Deno Deploy: a KV path of any kind is refused, naming why", () => {
  for (const path of ["./data/tessera.kv", ":memory:", "/tmp/t.kv", "https://kv.example.org"]) {
    assertRefused({ TESSERA_KV_PATH: path }, DEPLOY, "TESSERA_KV_PATH", /leave it unset/);
  }
});

Deno.test("Deno Deploy: TLS files are refused (Deploy serves HTTPS)", () => {
  const error = assertRefused(
    { TESSERA_TLS_CERT: "c.pem", TESSERA_TLS_KEY: "k.pem" },
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
  const config = loadConfig({ TESSERA_FEDERATION_CA_FILE: "certs/ca.pem" }, DEPLOY);
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
  assert.equal(loadConfig({}, DEPLOY).longPollMaxMs, 120_000);
  assert.equal(loadConfig({ TESSERA_LONG_POLL_MAX_MS: "25000" }, DEPLOY).longPollMaxMs, 25_000);
  for (const bad of ["999", "120001", "30s", "-1", "1e4"]) {
    assertRefused(
      { TESSERA_LONG_POLL_MAX_MS: bad },
      PROD,
      "TESSERA_LONG_POLL_MAX_MS",
      /from 1000 to 120000/,
    );
  }
});
