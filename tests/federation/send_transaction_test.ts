/**
 * `PUT /_matrix/federation/v1/send/{txnId}` across the in-process network: b.test's real key
 * signs both the request (X-Matrix) and Bob's events, and a.test's key ring fetches it over the
 * network. Accepted events reach Alice's sync and her notification counts (the push hook runs
 * for remote events); a retried transaction is answered, not handled, again; limits, ACLs and
 * rooms we are not in are refused.
 */
import { assert, assertEquals } from "../assert.ts";
import { startNetwork } from "./in_process_network.ts";
import { publicRoom } from "../routes/sender_rooms.ts";
import { RemoteView } from "./remote_view.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";

const BOB = "@bob:b.test";

async function setup() {
  const net = await startNetwork(["a.test", "b.test"]);
  const a = net.servers["a.test"];
  const b = net.servers["b.test"];
  const alice = await a.register("alice");
  const roomId = await publicRoom(a, alice.userId, "10");
  const view = new RemoteView(roomId, roomVersion("10")!, b.name, b.deps.keyring.current);
  const tip = async () => {
    await view.syncFrom(a.deps.eventStore);
    return (await a.deps.eventStore.roomHead(roomId))!.forwardExtremities[0];
  };
  const send = (txnId: string, pdus: unknown[], edus: unknown[] = []) =>
    net.transportFor(b.name).request({
      method: "PUT",
      destination: a.name,
      path: `/_matrix/federation/v1/send/${txnId}`,
      body: { origin: b.name, origin_server_ts: Date.now(), pdus, edus } as JsonValue,
    });
  return { net, a, b, alice, roomId, view, tip, send };
}

Deno.test("/send: Bob's join and message are accepted, reach Alice's sync and notify her", async () => {
  const t = await setup();
  try {
    const join = await t.view.build(await t.tip(), {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    const hello = await t.view.build(join.eventId, {
      sender: BOB,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "hello Alice" },
    });
    const res = await t.send("t1", [join.pdu, hello.pdu], [{ edu_type: "m.typing", content: {} }]);
    assertEquals(res.status, 200);
    assertEquals(res.body, { pdus: { [join.eventId]: {}, [hello.eventId]: {} } });

    const sync = await t.a.request("GET", "/_matrix/client/v3/sync", {
      token: t.alice.accessToken,
    });
    const room = sync.body.rooms.join[t.roomId];
    const bodies = room.timeline.events.filter((e: { type: string }) => e.type === "m.room.message")
      .map((e: { content: { body: string } }) => e.content.body);
    assertEquals(bodies, ["hello Alice"]);
    assertEquals(room.unread_notifications.notification_count, 1);
    const members = await t.a.deps.eventStore.members(t.roomId, ["join"]);
    assert(members.some((m) => m.userId === BOB));
  } finally {
    await t.net.close();
  }
});

Deno.test("/send: a retried transaction gets the first answer and nothing is handled twice", async () => {
  const t = await setup();
  try {
    const join = await t.view.build(await t.tip(), {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    const first = await t.send("same", [join.pdu]);
    const message = await t.view.build(join.eventId, {
      sender: BOB,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "in a reused transaction ID" },
    });
    const again = await t.send("same", [message.pdu]);
    assertEquals(again.status, 200);
    assertEquals(again.body, first.body);
    assertEquals(await t.a.deps.eventStore.getEvent(message.eventId), null);
  } finally {
    await t.net.close();
  }
});

Deno.test("/send: over 50 PDUs or 100 EDUs is refused whole with 400", async () => {
  const t = await setup();
  try {
    const pdus = Array.from({ length: 51 }, () => ({}));
    assertEquals((await t.send("big1", pdus)).status, 400);
    const edus = Array.from({ length: 101 }, () => ({ edu_type: "m.typing", content: {} }));
    assertEquals((await t.send("big2", [], edus)).status, 400);
    assertEquals((await t.send("bad", "pdus" as unknown as unknown[])).status, 400);
    // A refused transaction was not answered: the same ID with a valid body is handled.
    assertEquals((await t.send("big1", [])).status, 200);
  } finally {
    await t.net.close();
  }
});

Deno.test("/send: rooms we are not in and servers the room's ACL denies get an error per PDU", async () => {
  const t = await setup();
  try {
    const join = await t.view.build(await t.tip(), {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    await t.a.deps.sender.send({
      roomId: t.roomId,
      sender: t.alice.userId,
      type: "m.room.server_acl",
      stateKey: "",
      content: { allow: ["*"], deny: ["b.test"], allow_ip_literals: false },
    });
    const res = await t.send("acl", [join.pdu]);
    assertEquals(res.body, {
      pdus: { [join.eventId]: { error: "server b.test is denied by the room's server ACL" } },
    });
    assertEquals(await t.a.deps.eventStore.getEvent(join.eventId), null);

    const elsewhere = { ...join.pdu, room_id: "!nowhere:c.test", event_id: "$x:b.test" };
    const unknown = await t.send("unknown", [elsewhere]);
    assertEquals(unknown.body, {
      pdus: { "$x:b.test": { error: "this server is not in room !nowhere:c.test" } },
    });
  } finally {
    await t.net.close();
  }
});
