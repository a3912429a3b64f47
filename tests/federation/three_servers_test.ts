/**
 * Three Tessera servers on the in-process network: when C joins a room A hosts and B is in,
 * A forwards C's join (which C sent to A alone, through send_join) to B, so B knows C is in the
 * room at once and sends its next message to C directly, and C's to B arrive with nothing
 * missing.
 */
import assert from "node:assert/strict";
import { type NetworkServer, startNetwork } from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

const A = "a.test";
const B = "b.test";
const C = "c.test";
const enc = encodeURIComponent;

async function ok(
  server: NetworkServer,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await server.request(method, path, {
    token: user.accessToken,
    ...(body !== undefined ? { body } : {}),
  });
  assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function say(server: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  const path = `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`;
  return (await ok(server, user, "PUT", path, { msgtype: "m.text", body })).event_id as string;
}

Deno.test("three servers: A forwards C's send_join to B, and B's next message goes to C", async () => {
  const net = await startNetwork([A, B, C]);
  try {
    const [a, b, c] = [net.servers[A], net.servers[B], net.servers[C]];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carl = await c.register("carl");
    const created = await ok(a, alice, "POST", "/_matrix/client/v3/createRoom", {
      preset: "public_chat",
    });
    const roomId: string = created.room_id;
    await ok(b, bob, "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${A}`, {});
    await a.deps.federationSender.runOnce();

    await ok(c, carl, "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${A}`, {});
    const carlsJoin = (await a.deps.eventStore.currentState(roomId)).get(
      `m.room.member\u0000${carl.userId}` as never,
    )!;
    assert.ok(carlsJoin);
    // A passes the join on to B (and not back to C); nothing else has happened in the room.
    const sent = net.log.length;
    await a.deps.federationSender.runOnce();
    const toB = net.log.slice(sent).filter((r) =>
      r.path.startsWith("/_matrix/federation/v1/send/")
    );
    assert.deepEqual(toB.map((r) => r.destination), [B]);
    assert.equal((await b.deps.eventStore.getEvent(carlsJoin))?.status, "accepted");
    const members = await b.deps.eventStore.members(roomId, ["join"]);
    assert.deepEqual(
      members.map((m) => m.userId).sort(),
      [alice.userId, bob.userId, carl.userId].sort(),
    );

    // B now sends to C itself: Bob's message reaches C without A saying anything.
    const fromB = await say(b, bob, roomId, "welcome, Carl");
    await b.deps.federationSender.runOnce();
    assert.equal((await c.deps.eventStore.getEvent(fromB))?.status, "accepted");
    assert.equal((await a.deps.eventStore.getEvent(fromB))?.status, "accepted");
    const fromC = await say(c, carl, roomId, "thanks, Bob");
    await c.deps.federationSender.runOnce();
    assert.equal((await b.deps.eventStore.getEvent(fromC))?.status, "accepted");
    assert.equal((await a.deps.eventStore.getEvent(fromC))?.status, "accepted");
    // All three hold the same state.
    const state = async (s: NetworkServer) => [...(await s.deps.eventStore.currentState(roomId))];
    assert.deepEqual((await state(b)).sort(), (await state(a)).sort());
    assert.deepEqual((await state(c)).sort(), (await state(a)).sort());
  } finally {
    await net.close();
  }
});
