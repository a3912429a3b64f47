import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";
const addr = (hostname: string) => ({ remoteAddr: { transport: "tcp", hostname, port: 5000 } });

let guessedUsers = 0;

async function loginFrom(
  server: Awaited<ReturnType<typeof startTestServer>>,
  hostname: string | undefined,
) {
  // A new user name each time: failures on one account hit the per-account limit (3) first,
  // and this is about the per-address limit.
  const user = `nobody${guessedUsers++}`;
  const init = {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", user, password: "x" }),
  };
  const res = hostname === undefined
    ? await server.app.request(`${V3}/login`, init)
    : await server.app.request(`${V3}/login`, init, addr(hostname));
  return { status: res.status, headers: res.headers, body: await res.json() };
}

Deno.test("rate limits: login per client address gives 429 with retry_after_ms", async () => {
  let now = 1_000_000;
  const server = await startTestServer({}, { now: () => now });
  try {
    const statuses = [];
    for (let i = 0; i < 10; i++) statuses.push((await loginFrom(server, "192.0.2.1")).status);
    assertEquals(statuses, Array(10).fill(403));
    const limited = await loginFrom(server, "192.0.2.1");
    assertEquals(limited.status, 429);
    assertEquals(limited.body.errcode, "M_LIMIT_EXCEEDED");
    assert(limited.body.retry_after_ms > 0);
    assertEquals(limited.headers.get("retry-after"), "1");
    // Another address is unaffected; a request without connection info is never keyed.
    assertEquals((await loginFrom(server, "192.0.2.2")).status, 403);
    assertEquals((await loginFrom(server, undefined)).status, 403);
    now += limited.body.retry_after_ms;
    assertEquals((await loginFrom(server, "192.0.2.1")).status, 403);
  } finally {
    server.close();
  }
});

Deno.test("rate limits: TESSERA_RATE_LIMITS=off disables them", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    for (let i = 0; i < 15; i++) {
      assertEquals((await loginFrom(server, "192.0.2.1")).status, 403);
    }
  } finally {
    server.close();
  }
});

Deno.test("rate limits: /keys/claim and /sendToDevice are limited per user", async () => {
  const now = 1_000_000;
  const server = await startTestServer({}, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const claim = () =>
      server.request("POST", `${V3}/keys/claim`, {
        token: alice.accessToken,
        body: { one_time_keys: {} },
      });
    const claims = [];
    for (let i = 0; i < 51; i++) claims.push((await claim()).status);
    assertEquals(claims.slice(0, 50), Array(50).fill(200));
    assertEquals(claims[50], 429);
    const send = (i: number) =>
      server.request("PUT", `${V3}/sendToDevice/m.test/t${i}`, {
        token: alice.accessToken,
        body: { messages: {} },
      });
    const sends = [];
    for (let i = 0; i < 101; i++) sends.push((await send(i)).status);
    assertEquals(sends.slice(0, 100), Array(100).fill(200));
    const limited = await send(101);
    assertEquals(limited.status, 429);
    assertEquals(limited.body.errcode, "M_LIMIT_EXCEEDED");
    assert(limited.body.retry_after_ms > 0);
  } finally {
    server.close();
  }
});
