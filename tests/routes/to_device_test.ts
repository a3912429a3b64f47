/**
 * Send-to-device over HTTP: `/sendToDevice` (v3 and r0) into `/sync`'s `to_device`, with `*`,
 * transaction idempotency, acknowledgement by the next token (and redelivery to a retried
 * sync), the 100-per-response cap, a restart over a file-backed KV, device removal, a woken
 * long-poll and bad input.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;
type Requester = Pick<Server, "request">;

async function login(server: Requester, user: string, deviceId: string) {
  const res = await server.request("POST", `${V3}/login`, {
    body: { type: "m.login.password", user, password: "pw", device_id: deviceId },
  });
  assertEquals(res.status, 200);
  return {
    userId: res.body.user_id as string,
    accessToken: res.body.access_token as string,
    deviceId,
  };
}

async function sendToDevice(
  server: Requester,
  token: string,
  txnId: string,
  messages: Record<string, Record<string, JsonObject>>,
  type = "m.test",
  prefix = V3,
) {
  const res = await server.request("PUT", `${prefix}/sendToDevice/${type}/${txnId}`, {
    token,
    body: { messages },
  });
  assertEquals([res.status, res.body], [200, {}]);
}

async function sync(server: Requester, token: string, since?: string, timeout = 0) {
  const query = since ? `?since=${since}&timeout=${timeout}` : "";
  const res = await server.request("GET", `${V3}/sync${query}`, { token });
  assertEquals(res.status, 200);
  return res.body as { next_batch: string; to_device: { events: JsonObject[] } };
}

const ns = (body: { to_device: { events: JsonObject[] } }) =>
  body.to_device.events.map((e) => (e.content as JsonObject).n as number);

Deno.test("sendToDevice reaches the device's sync as {type, sender, content}, on v3 and r0", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    await sendToDevice(server, alice.accessToken, "t1", {
      [bob.userId]: { [bob.deviceId]: { n: 1, body: "hello" } },
    }, "m.room_key_request");
    await sendToDevice(
      server,
      alice.accessToken,
      "t2",
      {
        [bob.userId]: { [bob.deviceId]: { n: 2 } },
      },
      "m.test",
      "/_matrix/client/r0",
    );
    const first = await sync(server, bob.accessToken);
    assertEquals(first.to_device.events, [
      { type: "m.room_key_request", sender: alice.userId, content: { n: 1, body: "hello" } },
      { type: "m.test", sender: alice.userId, content: { n: 2 } },
    ]);
    // Acknowledged by the next token; the sender's own device got nothing.
    assertEquals((await sync(server, bob.accessToken, first.next_batch)).to_device.events, []);
    assertEquals((await sync(server, alice.accessToken)).to_device.events, []);
  } finally {
    server.close();
  }
});

Deno.test("`*` reaches every device of the user; a txn ID repeats only from another device", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "pw");
    const alice2 = await login(server, "alice", "ALICE2");
    const bob = await registerUser(server, "bob", "pw");
    const bob2 = await login(server, "bob", "BOB2");
    const body = { [bob.userId]: { "*": { n: 1 } } };
    await sendToDevice(server, alice.accessToken, "same", body);
    await sendToDevice(server, alice.accessToken, "same", body); // a retry: nothing new
    await sendToDevice(server, alice2.accessToken, "same", { [bob.userId]: { "*": { n: 2 } } });
    assertEquals(ns(await sync(server, bob.accessToken)), [1, 2]);
    assertEquals(ns(await sync(server, bob2.accessToken)), [1, 2]);
  } finally {
    server.close();
  }
});

Deno.test("a retried sync (old token) gets unacknowledged messages again; the next token drops them", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const to = (n: number) => ({ [bob.userId]: { [bob.deviceId]: { n } } });
    const initial = await sync(server, bob.accessToken);
    await sendToDevice(server, alice.accessToken, "a", to(1));
    const first = await sync(server, bob.accessToken, initial.next_batch);
    assertEquals(ns(first), [1]);
    // The response is lost; the client retries with the token it had.
    const retry = await sync(server, bob.accessToken, initial.next_batch);
    assertEquals(ns(retry), [1]);
    await sendToDevice(server, alice.accessToken, "b", to(2));
    const next = await sync(server, bob.accessToken, retry.next_batch);
    assertEquals(ns(next), [2]);
    const after = await sync(server, bob.accessToken, next.next_batch);
    assertEquals(ns(after), []);
    // Nothing is left behind once acknowledged.
    const left = [];
    const prefix = e2eeKeys.toDeviceInboxPrefix(bob.userId, bob.deviceId);
    for await (const e of server.kv.list({ prefix })) left.push(e);
    assertEquals(left, []);
  } finally {
    server.close();
  }
});

Deno.test("250 waiting messages come over three syncs, 100 at most each, in order, once", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const initial = await sync(server, bob.accessToken);
    for (let n = 1; n <= 250; n++) {
      await sendToDevice(server, alice.accessToken, `m${n}`, {
        [bob.userId]: { [bob.deviceId]: { n } },
      });
    }
    const seen: number[] = [];
    const sizes: number[] = [];
    let since = initial.next_batch;
    for (let i = 0; i < 3; i++) {
      // A long timeout: a response cut by the cap is not empty, so it must return at once.
      const body = await sync(server, bob.accessToken, since, 600_000);
      sizes.push(body.to_device.events.length);
      seen.push(...ns(body));
      since = body.next_batch;
    }
    assertEquals(sizes, [100, 100, 50]);
    assertEquals(seen, Array.from({ length: 250 }, (_, i) => i + 1));
    assertEquals(ns(await sync(server, bob.accessToken, since)), []);
  } finally {
    server.close();
  }
});

/** A server over a KV file, with a request helper like the test server's. */
async function fileServer(path: string) {
  const config = loadConfig({
    TESSERA_SERVER_NAME: "example.org:8448",
    TESSERA_RATE_LIMITS: "off",
  }, { dev: true });
  const kv = await Deno.openKv(path);
  const { app } = await assembleServer(config, kv, FAST_HASHING);
  return {
    kv,
    async request(method: string, url: string, options: { body?: unknown; token?: string } = {}) {
      const headers: Record<string, string> = {};
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      if (options.body !== undefined) headers["content-type"] = "application/json";
      const res = await app.request(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      return { status: res.status, body: await res.json(), headers: res.headers };
    },
  };
}

Deno.test("restarts between syncs (KV file closed and reopened) lose and repeat nothing", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/tessera.kv`;
  try {
    let server = await fileServer(path);
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    for (let n = 1; n <= 150; n++) {
      await sendToDevice(server, alice.accessToken, `m${n}`, {
        [bob.userId]: { [bob.deviceId]: { n } },
      });
    }
    const seen: number[] = [];
    let since: string | undefined;
    for (let i = 0; i < 4; i++) {
      const body = await sync(server, bob.accessToken, since);
      seen.push(...ns(body));
      since = body.next_batch;
      server.kv.close();
      server = await fileServer(path);
      // One more arrives after the first restart.
      if (i === 0) {
        await sendToDevice(server, alice.accessToken, "late", {
          [bob.userId]: { [bob.deviceId]: { n: 151 } },
        });
      }
    }
    assertEquals(seen, Array.from({ length: 151 }, (_, i) => i + 1));
    server.kv.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deleting a device deletes its to-device inbox", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob", "pw");
    const bob2 = await login(server, "bob", "BOB2");
    await sendToDevice(server, alice.accessToken, "t", { [bob.userId]: { "*": { n: 1 } } });
    await sync(server, bob2.accessToken); // leaves a delivery record too
    const res = await server.request("POST", `${V3}/logout`, { token: bob2.accessToken });
    assertEquals(res.status, 200);
    const prefixes = [
      e2eeKeys.toDeviceInboxPrefix(bob.userId, "BOB2"),
      e2eeKeys.toDeviceDelivery(bob.userId, "BOB2"),
    ];
    for (const prefix of prefixes) {
      const left = [];
      for await (const e of server.kv.list({ prefix })) left.push(e);
      assertEquals(left, []);
    }
    assertEquals((await server.kv.get(prefixes[1])).value, null);
    // The other device still has its message.
    assertEquals(ns(await sync(server, bob.accessToken)), [1]);
  } finally {
    server.close();
  }
});

Deno.test("a long-poll is woken by a to-device message", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const initial = await sync(server, bob.accessToken);
    const polling = sync(server, bob.accessToken, initial.next_batch, 600_000);
    while (server.deps.syncNotifier.watching === 0) await new Promise((r) => setTimeout(r, 1));
    await sendToDevice(server, alice.accessToken, "wake", {
      [bob.userId]: { [bob.deviceId]: { n: 42 } },
    });
    const woken = await polling;
    assertEquals(ns(woken), [42]);
    assert(woken.next_batch > initial.next_batch);
  } finally {
    server.close();
  }
});

Deno.test("sendToDevice refuses bad input with Matrix errors and writes nothing", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const count = async () => {
      let n = 0;
      for await (const _ of server.kv.list({ prefix: [] })) n++;
      return n;
    };
    const before = await count();
    const cases: [unknown, number, string][] = [
      [{}, 400, "M_MISSING_PARAM"],
      [{ messages: [] }, 400, "M_BAD_JSON"],
      [{ messages: { [bob.userId]: "x" } }, 400, "M_BAD_JSON"],
      [{ messages: { [bob.userId]: { [bob.deviceId]: 5 } } }, 400, "M_BAD_JSON"],
      [{ messages: { "bob": { D: {} } } }, 400, "M_INVALID_PARAM"],
      [{ messages: { [bob.userId]: { "": {} } } }, 400, "M_INVALID_PARAM"],
      [{ messages: { [bob.userId]: { "*": { pad: "x".repeat(66_000) } } } }, 413, "M_TOO_LARGE"],
    ];
    for (const [body, status, errcode] of cases) {
      const res = await server.request("PUT", `${V3}/sendToDevice/m.test/bad`, {
        token: alice.accessToken,
        body,
      });
      assertEquals([res.status, res.body.errcode], [status, errcode], JSON.stringify(body));
    }
    const long = await server.request("PUT", `${V3}/sendToDevice/m.test/${"t".repeat(300)}`, {
      token: alice.accessToken,
      body: { messages: {} },
    });
    assertEquals([long.status, long.body.errcode], [400, "M_INVALID_PARAM"]);
    const anonymous = await server.request("PUT", `${V3}/sendToDevice/m.test/x`, {
      body: { messages: {} },
    });
    assertEquals(anonymous.status, 401);
    assertEquals(await count(), before);
  } finally {
    server.close();
  }
});

Deno.test("a fan-out body over the usual 1 MiB is accepted (unknown devices skipped)", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const byDevice: Record<string, JsonObject> = { [bob.deviceId]: { n: 1 } };
    for (let i = 0; i < 500; i++) byDevice[`GONE${i}`] = { ciphertext: "x".repeat(3000) };
    const body = { messages: { [bob.userId]: byDevice } };
    assert(JSON.stringify(body).length > 1_100_000);
    const res = await server.request("PUT", `${V3}/sendToDevice/m.room.encrypted/big`, {
      token: alice.accessToken,
      body,
    });
    assertEquals([res.status, res.body], [200, {}]);
    assertEquals(ns(await sync(server, bob.accessToken)), [1]);
  } finally {
    server.close();
  }
});

Deno.test("concurrent senders and a syncing device: every message once, each sender's in order", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const bob = await registerUser(server, "bob");
    const senders = await Promise.all([0, 1, 2, 3].map((i) => registerUser(server, `s${i}`)));
    const PER_SENDER = 60;
    let sending = true;
    const sends = Promise.all(senders.map(async (s, i) => {
      for (let n = 0; n < PER_SENDER; n++) {
        await sendToDevice(server, s.accessToken, `c${n}`, {
          [bob.userId]: { [bob.deviceId]: { n: i * 1000 + n } },
        });
      }
    })).finally(() => sending = false);
    // The reader syncs while writes keep landing; its first sync is a full one.
    const seen: number[] = [];
    let since: string | undefined;
    for (;;) {
      // Read before the sync: an empty answer ends the loop only if every send had completed
      // before its barrier was taken.
      const allSent = !sending;
      const body = await sync(server, bob.accessToken, since);
      seen.push(...ns(body));
      since = body.next_batch;
      if (allSent && body.to_device.events.length === 0) break;
    }
    await sends;
    assertEquals(seen.length, senders.length * PER_SENDER);
    assertEquals(new Set(seen).size, seen.length);
    for (let i = 0; i < senders.length; i++) {
      const mine = seen.filter((n) => Math.floor(n / 1000) === i);
      assertEquals(mine, Array.from({ length: PER_SENDER }, (_, n) => i * 1000 + n));
    }
  } finally {
    server.close();
  }
});
