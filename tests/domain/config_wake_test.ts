import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../domain/config.ts";

const PROD = { dev: false };
/** Deploy requires these (tests/domain/config_deploy_test.ts). */
const SITE = { TESSERA_SERVER_NAME: "example.org", TESSERA_PUBLIC_BASEURL: "https://example.org" };

Deno.test("TESSERA_WAKE defaults: poll for a KV file, local for :memory:, watch on Deploy and KV Connect", () => {
  assert.deepEqual(loadConfig({}, PROD).wake, { mode: "poll", pollMs: 100 });
  assert.equal(loadConfig({ TESSERA_KV_PATH: "/tmp/x.kv" }, PROD).wake.mode, "poll");
  assert.equal(loadConfig({ TESSERA_KV_PATH: ":memory:" }, PROD).wake.mode, "local");
  assert.equal(loadConfig(SITE, { dev: false, deploy: true }).wake.mode, "watch");
  assert.equal(
    loadConfig(
      { TESSERA_KV_PATH: "https://api.deno.com/databases/x/connect", DENO_KV_ACCESS_TOKEN: "t" },
      PROD,
    ).wake.mode,
    "watch",
  );
  assert.ok(Object.isFrozen(loadConfig({}, PROD).wake));
});

Deno.test("TESSERA_WAKE and TESSERA_WAKE_POLL_MS: explicit values win, bad ones are refused", () => {
  const config = loadConfig(
    { TESSERA_KV_PATH: ":memory:", TESSERA_WAKE: "poll", TESSERA_WAKE_POLL_MS: "250" },
    PROD,
  );
  assert.deepEqual(config.wake, { mode: "poll", pollMs: 250 });
  assert.equal(
    loadConfig({ ...SITE, TESSERA_WAKE: "local" }, { dev: false, deploy: true }).wake.mode,
    "local",
  );
  for (
    const [env, variable] of [
      [{ TESSERA_WAKE: "kv" }, "TESSERA_WAKE"],
      [{ TESSERA_WAKE_POLL_MS: "5" }, "TESSERA_WAKE_POLL_MS"],
      [{ TESSERA_WAKE_POLL_MS: "60001" }, "TESSERA_WAKE_POLL_MS"],
      [{ TESSERA_WAKE_POLL_MS: "1.5" }, "TESSERA_WAKE_POLL_MS"],
    ] as const
  ) {
    assert.throws(
      () => loadConfig(env, PROD),
      (error) => error instanceof ConfigError && error.variable === variable,
    );
  }
});
