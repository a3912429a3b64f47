/**
 * Send-to-device across servers over the in-process network: `/sendToDevice` on a.test to users
 * on b.test (a named device, `*`) reaches their syncs exactly once, through a transaction whose
 * answer was lost, a repeated request, an EDU sent again under another transaction, and a
 * destination that was down; one sender's messages keep their order; an EDU whose sender is not
 * the origin's is dropped; recipients that would overflow an outbox entry are split into
 * several EDUs, and a message too large to send to its server is refused writing nothing.
 */
import { assert, assertEquals } from "../assert.ts";
import { edusSent, ok, sendEdus, withNetwork } from "./network_helpers.ts";
import type { Network, NetworkServer } from "./in_process_network.ts";
import { loginUser, type RegisteredUser } from "../routes/client_harness.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { DIRECT_TO_DEVICE_EDU } from "../../domain/federation/edus/to_device_edu.ts";

const A = "a.test";
const B = "b.test";
const V3 = "/_matrix/client/v3";

/** PUT /sendToDevice as `user` on `server`, then one pass of its federation sender. */
async function sendToDevice(
  server: NetworkServer,
  user: RegisteredUser,
  txnId: string,
  messages: Record<string, Record<string, JsonObject>>,
  type = "m.test",
): Promise<void> {
  await ok(server, user, "PUT", `${V3}/sendToDevice/${type}/${txnId}`, { messages });
}

/** A sync loop of one device: each call hands out what arrived since the last one. */
function syncer(server: NetworkServer, user: RegisteredUser) {
  let since: string | undefined;
  return async (): Promise<JsonObject[]> => {
    const query = since === undefined ? "" : `?since=${encodeURIComponent(since)}&timeout=0`;
    const body = await ok(server, user, "GET", `${V3}/sync${query}`);
    since = body.next_batch as string;
    return (body.to_device?.events ?? []) as JsonObject[];
  };
}

/** A second device of a user registered with password "pw". */
function loginDevice(server: NetworkServer, user: RegisteredUser, deviceId: string) {
  return loginUser(server, user.userId, "pw", deviceId);
}

/** The m.direct_to_device EDUs of every transaction a.test sent b.test so far. */
function toDeviceEdusSent(net: Network): JsonObject[] {
  return edusSent(net, { origin: A, destination: B, type: DIRECT_TO_DEVICE_EDU }).map((e) =>
    e.content
  );
}

/** A transaction from a.test to b.test carrying `edus`, signed by a.test as the sender does. */
function rawTransaction(net: Network, txnId: string, edus: JsonObject[]): Promise<void> {
  return sendEdus(net, A, B, edus, txnId);
}

const contentNs = (events: JsonObject[]) => events.map((e) => (e.content as JsonObject).n);

Deno.test("a named device and * on another server get the message once each", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await registerWithPassword(b, "carol");
    const carol2 = await loginDevice(b, carol, "CAROL2");
    const bobSync = syncer(b, bob), carolSync = syncer(b, carol), carol2Sync = syncer(b, carol2);
    await sendToDevice(a, alice, "t1", {
      [bob.userId]: { [bob.deviceId]: { n: 1 } },
      [carol.userId]: { "*": { n: 2 } },
    }, "m.room_key_request");
    await a.deps.federationSender.runOnce();

    assertEquals(await bobSync(), [
      { type: "m.room_key_request", sender: alice.userId, content: { n: 1 } },
    ]);
    assertEquals(contentNs(await carolSync()), [2]);
    assertEquals(contentNs(await carol2Sync()), [2]);
    // Acknowledged by the next sync: nothing comes twice.
    assertEquals(await bobSync(), []);
    assertEquals(await carolSync(), []);
    // One EDU for the one destination, named after the request.
    const edus = toDeviceEdusSent(net);
    assertEquals(edus.length, 1);
    assertEquals(edus[0].sender, alice.userId);
    assertEquals(edus[0].type, "m.room_key_request");
    assertEquals(typeof edus[0].message_id, "string");
    assertEquals(edus[0].messages, {
      [bob.userId]: { [bob.deviceId]: { n: 1 } },
      [carol.userId]: { "*": { n: 2 } },
    });
  });
});

/** Register `localpart` on `server` with password "pw" (so it can log in a second device). */
async function registerWithPassword(
  server: NetworkServer,
  localpart: string,
): Promise<RegisteredUser> {
  const res = await server.request("POST", `${V3}/register`, {
    body: { username: localpart, password: "pw", auth: { type: "m.login.dummy" } },
  });
  assertEquals(res.status, 200);
  return {
    userId: res.body.user_id as string,
    accessToken: res.body.access_token as string,
    deviceId: res.body.device_id as string,
  };
}

Deno.test("a transaction whose answer was lost, and its EDU sent again in another, deliver once", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bobSync = syncer(b, bob);
    // The first transaction reaches b.test, but its answer is lost on the way back.
    let lost = false;
    net.intercept(async (request) => {
      if (lost || request.destination !== B || !request.path.includes("/send/")) return "deliver";
      lost = true;
      const answer = await net.transportFor(A).request(request);
      assertEquals(answer.status, 200);
      return "drop";
    });
    await sendToDevice(a, alice, "t1", { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    await a.deps.federationSender.runOnce();
    assert(lost);
    // The same transaction again (b.test answers from its record), then, with a second
    // message queued meanwhile, a different transaction carrying the first EDU again.
    await a.deps.federationSender.noteInboundRequest(B);
    await sendToDevice(a, alice, "t2", { [bob.userId]: { [bob.deviceId]: { n: 2 } } });
    await a.deps.federationSender.runOnce();
    // The log holds the lost attempt twice (as a.test sent it and as the test passed it on).
    const edus = toDeviceEdusSent(net);
    assertEquals(edus.length, 4, "the first EDU went twice, then again with the second");
    assertEquals(new Set(edus.slice(0, 3).map((e) => e.message_id)).size, 1);
    assert(edus[3].message_id !== edus[0].message_id);
    assertEquals(contentNs(await bobSync()), [1, 2]);
    assertEquals(await bobSync(), []);
  });
});

Deno.test("the same EDU in two transactions is delivered once; a repeated request queues once", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bobSync = syncer(b, bob);
    // A repeated /sendToDevice (the client retrying) queues nothing more.
    await sendToDevice(a, alice, "t1", { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    await sendToDevice(a, alice, "t1", { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    await a.deps.federationSender.runOnce();
    assertEquals(toDeviceEdusSent(net).length, 1);
    assertEquals(contentNs(await bobSync()), [1]);
    // The EDU again, in transactions of its own: already delivered.
    const edu = { edu_type: DIRECT_TO_DEVICE_EDU, content: toDeviceEdusSent(net)[0] };
    await rawTransaction(net, "again-1", [edu]);
    await rawTransaction(net, "again-2", [edu, edu]);
    assertEquals(await bobSync(), []);
  });
});

Deno.test("one sender's messages arrive in the order sent", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bobSync = syncer(b, bob);
    for (let n = 1; n <= 8; n++) {
      await sendToDevice(a, alice, `t${n}`, { [bob.userId]: { [bob.deviceId]: { n } } });
    }
    await a.deps.federationSender.runOnce();
    assertEquals(contentNs(await bobSync()), [1, 2, 3, 4, 5, 6, 7, 8]);
    // Several EDUs of one sender in one transaction, delivered in their order too.
    const edus = [9, 10, 11].map((n) => ({
      edu_type: DIRECT_TO_DEVICE_EDU,
      content: {
        sender: alice.userId,
        type: "m.test",
        message_id: `raw-${n}`,
        messages: { [bob.userId]: { "*": { n } } },
      },
    }));
    await rawTransaction(net, "ordered", edus);
    assertEquals(contentNs(await bobSync()), [9, 10, 11]);
  });
});

Deno.test("an EDU whose sender is not the origin's, and entries for other servers, are dropped", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bobSync = syncer(b, bob);
    const edu = (sender: string, messageId: string, messages: JsonObject) => ({
      edu_type: DIRECT_TO_DEVICE_EDU,
      content: { sender, type: "m.test", message_id: messageId, messages },
    });
    await rawTransaction(net, "forged", [
      edu("@mallory:c.test", "m1", { [bob.userId]: { [bob.deviceId]: { n: 1 } } }),
      edu(bob.userId, "m2", { [bob.userId]: { [bob.deviceId]: { n: 2 } } }),
      // Malformed entries go, the well-formed one in the same EDU stays.
      edu(alice.userId, "m3", {
        "@someone:c.test": { X: { n: 3 } },
        "not a user": { X: { n: 3 } },
        [bob.userId]: { [bob.deviceId]: { n: 4 }, "bad device\u0000": "not an object" },
      }),
      edu(alice.userId, "", { [bob.userId]: { [bob.deviceId]: { n: 5 } } }),
    ]);
    const events = await bobSync();
    assertEquals(events, [{ type: "m.test", sender: alice.userId, content: { n: 4 } }]);
  });
});

Deno.test("a message for a server that is down is delivered when it comes back", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bobSync = syncer(b, bob);
    net.setReachable(B, false);
    await sendToDevice(a, alice, "t1", { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    await a.deps.federationSender.runOnce();
    assertEquals(await bobSync(), []);
    net.setReachable(B, true);
    // b.test talking to a.test clears the backoff (as any request from it would).
    await a.deps.federationSender.noteInboundRequest(B);
    await a.deps.federationSender.runOnce();
    assertEquals(contentNs(await bobSync()), [1]);
  });
});

Deno.test("recipients past one outbox entry split into several EDUs; an unsendable message is refused", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const localFriend = await a.register("friend");
    const users = [];
    for (let i = 0; i < 4; i++) users.push(await b.register(`u${i}`));
    const big = "x".repeat(25_000);
    const messages: Record<string, Record<string, JsonObject>> = {};
    users.forEach((u, i) => messages[u.userId] = { [u.deviceId]: { n: i, big } });
    await sendToDevice(a, alice, "big", messages);
    await a.deps.federationSender.runOnce();
    const edus = toDeviceEdusSent(net);
    assertEquals(edus.length, 2);
    assertEquals(new Set(edus.map((e) => e.message_id)).size, 2);
    for (const [i, u] of users.entries()) {
      const events = await syncer(b, u)();
      assertEquals(contentNs(events), [i]);
    }
    // A message that fits a local inbox but not an EDU: 413, and the local recipient in the
    // same request gets nothing either.
    const huge = "y".repeat(63_000);
    const res = await a.request("PUT", `${V3}/sendToDevice/m.test/huge`, {
      token: alice.accessToken,
      body: {
        messages: {
          [localFriend.userId]: { [localFriend.deviceId]: { huge } },
          [users[0].userId]: { [users[0].deviceId]: { huge } },
        },
      },
    });
    assertEquals([res.status, res.body.errcode], [413, "M_TOO_LARGE"]);
    assertEquals(await syncer(a, localFriend)(), []);
    await a.deps.federationSender.runOnce();
    assertEquals(toDeviceEdusSent(net).length, 2);
  });
});
