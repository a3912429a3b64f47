import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
const addr = (hostname: string) => ({ remoteAddr: { transport: "tcp", hostname, port: 5000 } });

async function loginFrom(
  server: Awaited<ReturnType<typeof startTestServer>>,
  hostname: string | undefined,
) {
  const init = {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", user: "nobody", password: "x" }),
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
