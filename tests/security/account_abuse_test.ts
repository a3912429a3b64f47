/**
 * Account abuse (issue 8, findings 8 and 17): password guessing through login and through every
 * user-interactive auth stage that takes m.login.password is limited per account, with the
 * failure counter in KV so that several processes (isolates) on one database share it; the
 * registration-token validity check is limited per address; and a login for an unknown,
 * deactivated or passwordless user costs the same scrypt verify as a wrong password.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING, registerUser } from "../routes/client_harness.ts";
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";
import { AccountService } from "../../domain/accounts/account_service.ts";
import { PasswordHasher } from "../../domain/accounts/password_hash.ts";
import { PasswordFailureLimiter } from "../../domain/accounts/password_failures.ts";
import { KvAccountStore } from "../../kv/account_store.ts";
import { KvPasswordFailureStore } from "../../kv/password_failure_store.ts";

const V3 = "/_matrix/client/v3";
const V1 = "/_matrix/client/v1";
const addr = (hostname: string) => ({ remoteAddr: { transport: "tcp", hostname, port: 5000 } });

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** The auth dict of the UIA m.login.password stage. */
const passwordAuth = (userId: string, password: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user: userId },
  password,
});

/** POST /login with a password from `hostname` (a new address each time defeats per-IP limits). */
async function loginFrom(
  server: Pick<Server, "app">,
  hostname: string,
  user: string,
  password: string,
) {
  const res = await server.app.request(`${V3}/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.password",
      identifier: { type: "m.id.user", user },
      password,
    }),
  }, addr(hostname));
  return { status: res.status, body: await res.json() };
}

Deno.test("password guessing: every UIA password stage shares one per-account limit; a correct password is refused until the window passes", async () => {
  let now = 1_000_000;
  const server = await startTestServer({}, { ...FAST_HASHING, now: () => now });
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const token = alice.accessToken;
    const wrong = passwordAuth(alice.userId, "guess");
    // Three wrong guesses through three different UIA-protected endpoints: each a 401 with the
    // stage's M_FORBIDDEN, as before.
    const guesses = [
      await server.request("POST", `${V3}/delete_devices`, {
        token,
        body: { devices: ["NOPE"], auth: wrong },
      }),
      await server.request("POST", `${V3}/account/deactivate`, { token, body: { auth: wrong } }),
      await server.request("POST", `${V1}/login/get_token`, { token, body: { auth: wrong } }),
    ];
    assertEquals(
      guesses.map((r) => [r.status, r.body.errcode]),
      Array(3).fill([401, "M_FORBIDDEN"]),
    );
    // The fourth guess, on yet another endpoint, is refused before any hashing.
    const limited = await server.request("POST", `${V3}/account/password`, {
      token,
      body: { new_password: "mine now", auth: wrong },
    });
    assertEquals(limited.status, 429);
    assertEquals(limited.body.errcode, "M_LIMIT_EXCEEDED");
    assert(limited.body.retry_after_ms > 0, "retry_after_ms");
    // Plain HTTP clients read the header instead.
    assertEquals(
      limited.headers.get("retry-after"),
      String(Math.ceil(limited.body.retry_after_ms / 1000)),
    );
    // The right password does not lift the limit: otherwise guessing would go on unhindered
    // until the right guess, which is what the limit is there to stop.
    const right = passwordAuth(alice.userId, "correct horse");
    const stillLimited = await server.request("POST", `${V1}/login/get_token`, {
      token,
      body: { auth: right },
    });
    assertEquals(stillLimited.status, 429);
    assertEquals(stillLimited.body.errcode, "M_LIMIT_EXCEEDED");
    // Nothing was changed by the refused requests: the old password still logs in (later).
    now += stillLimited.body.retry_after_ms;
    const allowed = await server.request("POST", `${V1}/login/get_token`, {
      token,
      body: { auth: right },
    });
    assertEquals(allowed.status, 200);
    // Bob's account has its own counter.
    const bob = await registerUser(server, "bob", "battery staple");
    const bobTry = await server.request("POST", `${V1}/login/get_token`, {
      token: bob.accessToken,
      body: { auth: passwordAuth(bob.userId, "guess") },
    });
    assertEquals([bobTry.status, bobTry.body.errcode], [401, "M_FORBIDDEN"]);
  } finally {
    server.close();
  }
});

Deno.test("password guessing: login failures are limited per account, whatever the address, and login shares the counter with UIA", async () => {
  let now = 1_000_000;
  const server = await startTestServer({}, { ...FAST_HASHING, now: () => now });
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const statuses = [];
    for (let i = 1; i <= 2; i++) {
      statuses.push((await loginFrom(server, `192.0.2.${i}`, "alice", "guess")).status);
    }
    const uia = await server.request("POST", `${V1}/login/get_token`, {
      token: alice.accessToken,
      body: { auth: passwordAuth(alice.userId, "guess") },
    });
    statuses.push(uia.status);
    assertEquals(statuses, [403, 403, 401]);
    const limited = await loginFrom(server, "192.0.2.9", "alice", "guess");
    assertEquals([limited.status, limited.body.errcode], [429, "M_LIMIT_EXCEEDED"]);
    assert(limited.body.retry_after_ms > 0);
    // Case and the full user ID name the same account, hence the same counter.
    const right = await loginFrom(server, "192.0.2.10", "@ALICE:example.org:8448", "correct horse");
    assertEquals(right.status, 429);
    // Unknown users are counted the same way, so a 429 does not tell who exists.
    for (let i = 0; i < 3; i++) {
      assertEquals((await loginFrom(server, `198.51.100.${i}`, "nobody", "x")).status, 403);
    }
    assertEquals((await loginFrom(server, "198.51.100.9", "nobody", "x")).status, 429);
    now += right.body.retry_after_ms;
    assertEquals((await loginFrom(server, "192.0.2.11", "alice", "correct horse")).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("password guessing: two processes on one KV share the failure counter", async () => {
  const now = 1_000_000;
  const kv = await Deno.openKv(":memory:");
  try {
    const config = loadConfig({ TESSERA_SERVER_NAME: "example.org:8448" }, { dev: true });
    const options = { ...FAST_HASHING, now: () => now };
    // Two assemblies over one database: two isolates, each with its own memory.
    const a = await assembleServer(config, kv, options);
    const b = await assembleServer(config, kv, options);
    const reg = await a.app.request(`${V3}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        username: "alice",
        password: "correct horse",
        auth: { type: "m.login.dummy" },
      }),
    });
    assertEquals(reg.status, 200);
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      const server = i % 2 === 0 ? a : b;
      statuses.push((await loginFrom(server, `192.0.2.${i}`, "alice", "guess")).status);
    }
    // Three failures in all, not three per process.
    assertEquals(statuses, [403, 403, 403, 429, 429, 429]);
  } finally {
    kv.close();
  }
});

Deno.test("password guessing: concurrent guesses cannot overrun the limit", async () => {
  const server = await startTestServer({}, { ...FAST_HASHING, now: () => 1_000_000 });
  try {
    await registerUser(server, "alice", "correct horse");
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => loginFrom(server, `192.0.2.${i}`, "alice", "guess")),
    );
    const statuses = results.map((r) => r.status).sort();
    assertEquals(statuses, [...Array(3).fill(403), ...Array(9).fill(429)]);
  } finally {
    server.close();
  }
});

Deno.test("password guessing: TESSERA_RATE_LIMITS=off turns the per-account limit off too", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    await registerUser(server, "alice", "correct horse");
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await loginFrom(server, "192.0.2.1", "alice", "guess")).status);
    }
    assertEquals(statuses, Array(5).fill(403));
    assertEquals((await loginFrom(server, "192.0.2.1", "alice", "correct horse")).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("rate limits: the registration-token validity check is limited per address", async () => {
  let now = 1_000_000;
  const server = await startTestServer(
    { TESSERA_REGISTRATION: "token", TESSERA_REGISTRATION_TOKEN: "s3cret-token" },
    { now: () => now },
  );
  try {
    const check = async (hostname: string, token: string) => {
      const res = await server.app.request(
        `${V1}/register/m.login.registration_token/validity?token=${token}`,
        {},
        addr(hostname),
      );
      return { status: res.status, body: await res.json() };
    };
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push((await check("192.0.2.1", `guess${i}`)).status);
    assertEquals(answers, Array(5).fill(200));
    const limited = await check("192.0.2.1", "s3cret-token");
    assertEquals([limited.status, limited.body.errcode], [429, "M_LIMIT_EXCEEDED"]);
    assert(limited.body.retry_after_ms > 0);
    assertEquals((await check("192.0.2.2", "s3cret-token")).body, { valid: true });
    now += limited.body.retry_after_ms;
    assertEquals((await check("192.0.2.1", "s3cret-token")).body, { valid: true });
  } finally {
    server.close();
  }
});

/** A hasher that counts its verifies, so the test proves work was done without timing it. */
class CountingHasher extends PasswordHasher {
  verifies = 0;
  override verify(password: string, stored: string): Promise<boolean> {
    this.verifies++;
    return super.verify(password, stored);
  }
}

Deno.test("login timing: unknown, deactivated and passwordless users cost one scrypt verify, like a wrong password", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const hasher = new CountingHasher({ logN: 8, r: 8, p: 1 });
    const accounts = new AccountService({
      store: new KvAccountStore(kv),
      serverName: "example.org",
      hasher,
      passwordFailures: new PasswordFailureLimiter(new KvPasswordFailureStore(kv), {
        // Far above what the test uses: this test is about cost, not limits.
        rule: { burst: 100, perSecond: 1 },
      }),
    });
    await accounts.register({ localpart: "alice", password: "correct horse" });
    await accounts.register({ localpart: "nopass" });
    await accounts.register({ localpart: "gone", password: "old password" });
    await accounts.deactivations.deactivate("@gone:example.org");
    // The dummy hash is built from the hasher's own parameters.
    assert(hasher.dummyHash.startsWith("scrypt$8$8$1$"), hasher.dummyHash);

    const verifiesFor = async (user: string, password: string) => {
      const before = hasher.verifies;
      let errcode = "none";
      try {
        await accounts.loginWithPassword(user, password, {});
      } catch (error) {
        errcode = (error as { errcode?: string }).errcode ?? String(error);
      }
      return { verifies: hasher.verifies - before, errcode };
    };
    assertEquals(await verifiesFor("alice", "wrong"), { verifies: 1, errcode: "M_FORBIDDEN" });
    assertEquals(await verifiesFor("nobody", "wrong"), { verifies: 1, errcode: "M_FORBIDDEN" });
    assertEquals(await verifiesFor("nopass", "wrong"), { verifies: 1, errcode: "M_FORBIDDEN" });
    assertEquals(await verifiesFor("gone", "old password"), {
      verifies: 1,
      errcode: "M_FORBIDDEN",
    });
    // The dummy never matches, whatever is typed.
    assertEquals(await verifiesFor("nobody", ""), { verifies: 1, errcode: "M_FORBIDDEN" });
    assertEquals(await verifiesFor("alice", "correct horse"), { verifies: 1, errcode: "none" });
  } finally {
    kv.close();
  }
});

Deno.test("login: an over-long user name is refused like a wrong password, not a 500", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    for (const user of ["a".repeat(3000), `@${"a".repeat(300)}:example.org:8448`]) {
      const res = await loginFrom(server, "192.0.2.1", user, "x");
      assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"]);
    }
  } finally {
    server.close();
  }
});
