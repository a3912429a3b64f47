/** The 3PID variables of domain/config.ts: TESSERA_SMTP_URL, TESSERA_SMTP_FROM, TLS checks. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../domain/config.ts";

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

Deno.test("config: SMTP is off by default, and TLS to identity servers is verified", () => {
  const config = loadConfig({}, PROD);
  assert.equal(config.smtp, undefined);
  assert.equal(config.outboundTlsVerify, true);
});

Deno.test("config: TESSERA_SMTP_URL takes smtp:// and smtps://, with a default sender", () => {
  const config = loadConfig({
    TESSERA_SMTP_URL: "smtps://user:p%40ss@mail.example.org:465",
    TESSERA_SERVER_NAME: "example.org:8448",
  }, PROD);
  assert.deepEqual(config.smtp, {
    url: "smtps://user:p%40ss@mail.example.org:465",
    from: "noreply@example.org",
  });
  const named = loadConfig({
    TESSERA_SMTP_URL: "smtp://127.0.0.1:2525",
    TESSERA_SMTP_FROM: "Tessera <noreply@example.org>",
  }, PROD);
  assert.equal(named.smtp?.from, "Tessera <noreply@example.org>");
});

Deno.test("config: bad SMTP settings stop start-up without echoing credentials", () => {
  const scheme = problem({ TESSERA_SMTP_URL: "http://mail.example.org" });
  assert.match(scheme, /^TESSERA_SMTP_URL: /);
  const secret = problem({ TESSERA_SMTP_URL: "smtp://user:hunter2@" });
  assert.doesNotMatch(secret, /hunter2/);
  assert.match(
    problem({ TESSERA_SMTP_URL: "smtp://h", TESSERA_SMTP_FROM: "not an address" }),
    /^TESSERA_SMTP_FROM: /,
  );
  assert.match(problem({ TESSERA_SMTP_FROM: "a@example.org" }), /^TESSERA_SMTP_URL: required/);
  assert.match(problem({ TESSERA_OUTBOUND_TLS_VERIFY: "no" }), /^TESSERA_OUTBOUND_TLS_VERIFY: /);
});
