/**
 * Rate limits across a fleet: two servers (the real assembly) over ONE KV database, as two
 * isolates of one deployment. Before the fleet's counters each allowed the whole limit, so N
 * processes allowed N times it. Each server's flush is called by the test (its timer would do it
 * within 100 ms) and the clock is the test's, so nothing here depends on timing.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startSharedKvServers } from "../fleet_coherence/shared_kv_servers.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

let guessedUsers = 0;

/** A failed login from `hostname` (a new user name each time: the per-account limit is apart). */
async function loginFrom(server: Server, hostname: string) {
  const res = await server.app.request(
    `${V3}/login`,
    {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        type: "m.login.password",
        user: `fleetnobody${guessedUsers++}`,
        password: "x",
      }),
    },
    { remoteAddr: { transport: "tcp", hostname, port: 5000 } },
  );
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** Two servers on one KV with rate limits on, on the test's clock. */
function startFleet(now: () => number) {
  return startSharedKvServers({ TESSERA_RATE_LIMITS: "on" }, { ...FAST_HASHING, now });
}

Deno.test("fleet rate limits: login per address is one limit over two servers", async () => {
  let now = 1_000_000;
  const { a, b, close } = await startFleet(() => now);
  try {
    for (let i = 0; i < 6; i++) assertEquals((await loginFrom(a, "192.0.2.1")).status, 403);
    await a.deps.rateLimiter.flush();
    // B allows what is left of the address's 10, then answers as one server would.
    for (let i = 0; i < 4; i++) assertEquals((await loginFrom(b, "192.0.2.1")).status, 403);
    const limited = await loginFrom(b, "192.0.2.1");
    assertEquals(limited.status, 429);
    assertEquals(limited.body.errcode, "M_LIMIT_EXCEEDED");
    assertEquals(limited.body.retry_after_ms, 1000);
    assertEquals(limited.headers.get("retry-after"), "1");
    await b.deps.rateLimiter.flush();
    // A's read of the counters is kept for the flush interval (100 ms); then it sees B's hits.
    now += 100;
    assertEquals((await loginFrom(a, "192.0.2.1")).status, 429);
    // Another address has its own limit on both.
    assertEquals((await loginFrom(a, "192.0.2.2")).status, 403);
    assertEquals((await loginFrom(b, "192.0.2.2")).status, 403);
    // After the wait, one more attempt for the fleet (1 per second), not one per server.
    now += limited.body.retry_after_ms;
    assertEquals((await loginFrom(b, "192.0.2.1")).status, 403);
    await b.deps.rateLimiter.flush();
    now += 100;
    assertEquals((await loginFrom(a, "192.0.2.1")).status, 429);
  } finally {
    close();
  }
});

Deno.test("fleet rate limits: a user's /keys/claim limit is shared by the servers they use", async () => {
  let now = 1_000_000;
  const { a, b, close } = await startFleet(() => now);
  try {
    const alice = await registerUser(a, "alice");
    const claim = (server: Server) =>
      server.request("POST", `${V3}/keys/claim`, {
        token: alice.accessToken,
        body: { one_time_keys: {} },
      });
    // Burst 50: 30 through A, then B allows the other 20.
    for (let i = 0; i < 30; i++) assertEquals((await claim(a)).status, 200);
    await a.deps.rateLimiter.flush();
    const onB: number[] = [];
    for (let i = 0; i < 21; i++) onB.push((await claim(b)).status);
    assertEquals(onB, [...Array(20).fill(200), 429]);
    await b.deps.rateLimiter.flush();
    now += 100;
    const limited = await claim(a);
    assertEquals(limited.status, 429);
    assert(limited.body.retry_after_ms > 0);
  } finally {
    close();
  }
});

Deno.test("fleet rate limits: TESSERA_RATE_LIMITS=off writes no counters", async () => {
  const kv = await Deno.openKv(":memory:");
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING, kv);
  try {
    for (let i = 0; i < 15; i++) assertEquals((await loginFrom(server, "192.0.2.1")).status, 403);
    await server.deps.rateLimiter.flush();
    const counters = await Array.fromAsync(kv.list({ prefix: ["ratelimit_count"] }));
    assertEquals(counters.length, 0);
  } finally {
    server.close();
    kv.close();
  }
});
