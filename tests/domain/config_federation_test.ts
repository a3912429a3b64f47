/** The federation variables of domain/config.ts: TESSERA_FEDERATION, _CA_FILE, _ALLOW_PRIVATE. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig, unknownTesseraVariables } from "../../domain/config.ts";

const PROD = { dev: false };

function problem(env: Record<string, string>): string {
  try {
    loadConfig(env, PROD);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.message;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config: federation is on, with system roots only and no private peers, by default", () => {
  assert.deepEqual(loadConfig({}, PROD).federation, { enabled: true, allowPrivate: false });
  // Empty means unset, as for every variable.
  assert.deepEqual(
    loadConfig({ TESSERA_FEDERATION: "", TESSERA_FEDERATION_CA_FILE: "" }, PROD).federation,
    { enabled: true, allowPrivate: false },
  );
});

Deno.test("config: the three federation variables are read", () => {
  const config = loadConfig({
    TESSERA_FEDERATION: "off",
    TESSERA_FEDERATION_CA_FILE: "/etc/tessera/ca.pem",
    TESSERA_FEDERATION_ALLOW_PRIVATE: "true",
  }, PROD);
  assert.deepEqual(config.federation, {
    enabled: false,
    caFile: "/etc/tessera/ca.pem",
    allowPrivate: true,
  });
  assert.equal(loadConfig({ TESSERA_FEDERATION: "on" }, PROD).federation.enabled, true);
  // on/off work for the private switch too, like the other switches.
  assert.equal(
    loadConfig({ TESSERA_FEDERATION_ALLOW_PRIVATE: "on" }, PROD).federation.allowPrivate,
    true,
  );
  assert.equal(
    loadConfig({ TESSERA_FEDERATION_ALLOW_PRIVATE: "false" }, PROD).federation.allowPrivate,
    false,
  );
  assert.deepEqual(
    unknownTesseraVariables({
      TESSERA_FEDERATION: "on",
      TESSERA_FEDERATION_CA_FILE: "x",
      TESSERA_FEDERATION_ALLOW_PRIVATE: "true",
    }),
    [],
  );
});

Deno.test("config: bad federation values stop start-up with one line naming the variable", () => {
  assert.equal(
    problem({ TESSERA_FEDERATION: "yes" }),
    'TESSERA_FEDERATION: expected "on" or "off", got "yes"',
  );
  assert.equal(
    problem({ TESSERA_FEDERATION_ALLOW_PRIVATE: "1" }),
    'TESSERA_FEDERATION_ALLOW_PRIVATE: expected "true" or "false", got "1"',
  );
  assert.equal(
    problem({ TESSERA_FEDERATION_CA_FILE: "a\u0000b" }),
    "TESSERA_FEDERATION_CA_FILE: path contains NUL",
  );
});
