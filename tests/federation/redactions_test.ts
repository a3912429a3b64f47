/**
 * Redactions from another server, as A's clients see them (the read pipeline's withholding,
 * domain/room_events/applied_redactions.ts), over the in-process network: B sends, through
 * `/send`, a redaction of an event in another room and one its user may not make (room v10: the
 * auth rules accept both, readers decide); neither redacts its target nor shows in any client
 * read. A redaction that arrives before its target shows, and applies, once the target arrives,
 * with `unsigned.redacted_by`; so does B's user redacting their own message the ordinary way.
 * Servers reading A (/event, /backfill, /get_missing_events) are not given such redactions
 * either, while /state, /state_ids and /event_auth stay whole.
 */
import assert from "node:assert/strict";
import { type Network, type NetworkServer, startNetwork } from "./in_process_network.ts";
import { RemoteView } from "./remote_view.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import type { RedactableEvent } from "../../domain/protocol/redaction.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const V3 = "/_matrix/client/v3";
const enc = encodeURIComponent;

async function ok(
  server: NetworkServer,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await server.request(method, `${V3}${path}`, {
    token: user.accessToken,
    ...(body !== undefined ? { body } : {}),
  });
  assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function say(server: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  const path = `/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`;
  return (await ok(server, user, "PUT", path, { msgtype: "m.text", body })).event_id as string;
}

/** Let both servers send what they have queued, a few rounds. */
async function exchange(net: Network): Promise<void> {
  for (let round = 0; round < 3; round++) {
    await net.servers[A].deps.federationSender.runOnce();
    await net.servers[B].deps.federationSender.runOnce();
  }
}

/** B pushes `pdus` to A in one transaction; every one of them is accepted. */
async function push(net: Network, pdus: JsonObject[]): Promise<void> {
  const sent = await net.transportFor(B).request({
    method: "PUT",
    destination: A,
    path: `/_matrix/federation/v1/send/${crypto.randomUUID()}`,
    body: { origin: B, origin_server_ts: Date.now(), pdus, edus: [] },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const results = (sent.body as { pdus: Record<string, { error?: string }> }).pdus;
  for (const [id, result] of Object.entries(results)) {
    assert.equal(result.error, undefined, `${id}: ${JSON.stringify(results)}`);
    assert.equal((await net.servers[A].deps.eventStore.getEvent(id))?.status, "accepted");
  }
}

/** A room event as Alice reads it on A through /event; null when 404. */
async function eventOnA(a: NetworkServer, alice: RegisteredUser, roomId: string, id: string) {
  const res = await a.request("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(id)}`, {
    token: alice.accessToken,
  });
  if (res.status === 404) return null;
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as JsonObject;
}

/** Event IDs of a room's /messages on A, newest first. */
async function messageIds(a: NetworkServer, alice: RegisteredUser, roomId: string) {
  const page = await ok(a, alice, "GET", `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
  return (page.chunk as JsonObject[]).map((e) => e.event_id as string);
}

/** IDs of the events Alice's search for `term` finds on A. */
async function searchIds(a: NetworkServer, alice: RegisteredUser, term: string) {
  const body = await ok(a, alice, "POST", "/search", {
    search_categories: { room_events: { search_term: term } },
  });
  const results = body.search_categories.room_events.results as { result: JsonObject }[];
  return results.map((r) => r.result.event_id as string);
}

/** IDs of the events of Alice's /notifications on A. */
async function notifiedIds(a: NetworkServer, alice: RegisteredUser) {
  const body = await ok(a, alice, "GET", "/notifications");
  return (body.notifications as { event: JsonObject }[]).map((n) => n.event.event_id as string);
}

/** Every event ID anywhere in a sync response. */
function syncIds(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => syncIds(v, out));
  else if (value && typeof value === "object") {
    const o = value as Record<string, unknown>;
    if (typeof o.event_id === "string") out.add(o.event_id);
    Object.values(o).forEach((v) => syncIds(v, out));
  }
  return out;
}

Deno.test("redactions over federation: another room's and an unauthorised one are withheld; one whose target comes later applies then, with redacted_by", async () => {
  const net = await startNetwork([A, B]);
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rooms: string[] = [];
    for (let i = 0; i < 2; i++) {
      const created = await ok(a, alice, "POST", "/createRoom", {
        preset: "public_chat",
        room_version: "10",
      });
      rooms.push(created.room_id);
      await ok(b, bob, "POST", `/join/${enc(created.room_id)}?server_name=${A}`, {});
    }
    const [room, otherRoom] = rooms;
    // Alice wants to hear of every redaction, so a withheld one would show in /notifications.
    await ok(a, alice, "PUT", "/pushrules/global/override/redactions", {
      conditions: [{ kind: "event_match", key: "type", pattern: "m.room.redaction" }],
      actions: ["notify"],
    });
    const aliceSaid = await say(a, alice, room, "alice's words");
    const bobElsewhere = await say(b, bob, otherRoom, "bob in the other room");
    await exchange(net);
    assert.ok(await a.deps.eventStore.getEvent(bobElsewhere), "B's message reached A");

    // A misbehaving B, signing with its real key.
    const view = new RemoteView(room, roomVersion("10")!, B, b.deps.keyring.current);
    await view.syncFrom(a.deps.eventStore);
    const tip = (await a.deps.eventStore.roomHead(room))!.forwardExtremities[0];
    const redaction = (redacts: string) => ({
      sender: bob.userId,
      type: "m.room.redaction",
      content: { reason: "mine" },
      redacts,
    });
    // Bob's own message, but of the other room.
    const crossRoom = await view.build(tip, redaction(bobElsewhere));
    // Alice's message: Bob (level 0, another server) may not redact it.
    const forbidden = await view.build(crossRoom.eventId, redaction(aliceSaid));
    // Bob's own message, which A will only see after the redaction.
    const late = await view.build(forbidden.eventId, {
      sender: bob.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "said too soon" },
    });
    const early = await view.build(forbidden.eventId, redaction(late.eventId));
    await push(net, [crossRoom.pdu, forbidden.pdu, early.pdu] as unknown as JsonObject[]);

    const withheld = [crossRoom.eventId, forbidden.eventId, early.eventId];
    const shown = await messageIds(a, alice, room);
    for (const id of withheld) {
      assert.ok(!shown.includes(id), `${id} withheld from /messages`);
      assert.equal(await eventOnA(a, alice, room, id), null, `${id} withheld from /event`);
      const context = await a.request("GET", `${V3}/rooms/${enc(room)}/context/${enc(id)}`, {
        token: alice.accessToken,
      });
      assert.equal(context.status, 404, `${id} withheld from /context`);
    }
    const sync = syncIds(await ok(a, alice, "GET", "/sync"));
    for (const id of withheld) assert.ok(!sync.has(id), `${id} withheld from /sync`);
    assert.ok(sync.has(aliceSaid));
    // Neither target is redacted.
    const target = (await eventOnA(a, alice, room, aliceSaid))!;
    assert.equal((target.content as JsonObject).body, "alice's words");
    assert.equal((target.unsigned as JsonObject).redacted_by, undefined);
    const elsewhere = (await eventOnA(a, alice, otherRoom, bobElsewhere))!;
    assert.equal((elsewhere.content as JsonObject).body, "bob in the other room");
    // Search still finds both targets' words.
    assert.deepEqual(await searchIds(a, alice, "words"), [aliceSaid]);
    assert.deepEqual(await searchIds(a, alice, "other"), [bobElsewhere]);
    // Alice is notified of redactions (her rule): of none of these.
    const notified = await notifiedIds(a, alice);
    for (const id of withheld) {
      assert.ok(!notified.includes(id), `${id} withheld from /notifications`);
    }

    // The target arrives: the early redaction applies and shows.
    await push(net, [late.pdu] as unknown as JsonObject[]);
    const lateOnA = (await eventOnA(a, alice, room, late.eventId))!;
    assert.deepEqual(lateOnA.content, {});
    const unsigned = lateOnA.unsigned as JsonObject;
    assert.equal(unsigned.redacted_by, early.eventId);
    assert.equal((unsigned.redacted_because as JsonObject).event_id, early.eventId);
    assert.equal((await eventOnA(a, alice, room, early.eventId))?.redacts, late.eventId);
    assert.ok((await messageIds(a, alice, room)).includes(early.eventId));
    assert.ok((await notifiedIds(a, alice)).includes(early.eventId));
    assert.deepEqual(await searchIds(a, alice, "soon"), []);
    // The two others stay withheld.
    assert.equal(await eventOnA(a, alice, room, forbidden.eventId), null);
    assert.equal(await eventOnA(a, alice, room, crossRoom.eventId), null);

    // Bob redacts his own message the ordinary way, through B.
    const oops = await say(b, bob, room, "oops");
    await exchange(net);
    const redactedBy = (await ok(
      b,
      bob,
      "PUT",
      `/rooms/${enc(room)}/redact/${enc(oops)}/${crypto.randomUUID()}`,
      {},
    )).event_id as string;
    await exchange(net);
    const oopsOnA = (await eventOnA(a, alice, room, oops))!;
    assert.deepEqual(oopsOnA.content, {});
    assert.equal((oopsOnA.unsigned as JsonObject).redacted_by, redactedBy);
    assert.ok((await messageIds(a, alice, room)).includes(redactedBy));
  } finally {
    await net.close();
  }
});

/** B's federation read of A; the answer's status and body. */
async function readA(
  net: Network,
  method: "GET" | "POST",
  path: string,
  body?: JsonObject,
) {
  const res = await net.transportFor(B).request({
    method,
    destination: A,
    path: `/_matrix/federation/v1${path}`,
    ...(body !== undefined ? { body } : {}),
  });
  return { status: res.status, body: res.body as JsonObject };
}

/** The event IDs of PDUs in a v10 room. */
function idsOf(pdus: unknown): string[] {
  return (pdus as JsonObject[]).map((pdu) =>
    computeEventId(pdu as unknown as RedactableEvent, roomVersion("10")!)
  );
}

Deno.test("redactions over federation: one that does not apply is withheld from other servers' timeline reads, never from state", async () => {
  const net = await startNetwork([A, B]);
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await ok(a, alice, "POST", "/createRoom", {
      preset: "public_chat",
      room_version: "10",
    });
    const room = created.room_id as string;
    await ok(b, bob, "POST", `/join/${enc(room)}?server_name=${A}`, {});
    const aliceSaid = await say(a, alice, room, "alice's words");
    await exchange(net);

    const view = new RemoteView(room, roomVersion("10")!, B, b.deps.keyring.current);
    await view.syncFrom(a.deps.eventStore);
    const tip = (await a.deps.eventStore.roomHead(room))!.forwardExtremities[0];
    const redaction = (redacts: string) => ({
      sender: bob.userId,
      type: "m.room.redaction",
      content: { reason: "mine" },
      redacts,
    });
    // Alice's message, which Bob may not redact; then one of Bob's own that A does not hold yet.
    const forbidden = await view.build(tip, redaction(aliceSaid));
    const late = await view.build(forbidden.eventId, {
      sender: bob.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "said too soon" },
    });
    const early = await view.build(forbidden.eventId, redaction(late.eventId));
    const after = await view.build(early.eventId, {
      sender: bob.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "after them" },
    });
    await push(net, [forbidden.pdu, early.pdu, after.pdu] as unknown as JsonObject[]);
    const withheld = [forbidden.eventId, early.eventId];

    for (const id of withheld) {
      assert.equal((await readA(net, "GET", `/event/${enc(id)}`)).status, 404, `/event ${id}`);
    }
    const shown = await readA(net, "GET", `/event/${enc(after.eventId)}`);
    assert.deepEqual(idsOf(shown.body.pdus), [after.eventId]);
    const backfill = async () => {
      const res = await readA(
        net,
        "GET",
        `/backfill/${enc(room)}?v=${enc(after.eventId)}&limit=100`,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return idsOf(res.body.pdus);
    };
    const missing = async () => {
      const res = await readA(net, "POST", `/get_missing_events/${enc(room)}`, {
        earliest_events: [aliceSaid],
        latest_events: [after.eventId],
        limit: 20,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return idsOf(res.body.events);
    };
    // The walks pass through them (what lies behind still comes) but leave them out.
    const backfilled = await backfill();
    assert.ok(backfilled.includes(after.eventId) && backfilled.includes(aliceSaid));
    for (const id of withheld) assert.ok(!backfilled.includes(id), `${id} withheld from /backfill`);
    assert.deepEqual(await missing(), []);

    // State and auth chains are never cut short: every ID state_ids names comes as a PDU.
    const ids = await readA(net, "GET", `/state_ids/${enc(room)}?event_id=${enc(after.eventId)}`);
    const state = await readA(net, "GET", `/state/${enc(room)}?event_id=${enc(after.eventId)}`);
    assert.equal(state.status, 200);
    assert.deepEqual(idsOf(state.body.pdus).sort(), (ids.body.pdu_ids as string[]).sort());
    assert.deepEqual(
      idsOf(state.body.auth_chain).sort(),
      (ids.body.auth_chain_ids as string[]).sort(),
    );
    const auth = await readA(net, "GET", `/event_auth/${enc(room)}/${enc(early.eventId)}`);
    assert.equal(auth.status, 200);
    assert.ok((auth.body.auth_chain as JsonObject[]).length > 0);

    // Its target arrives: the early redaction applies, and servers are given it too.
    await push(net, [late.pdu] as unknown as JsonObject[]);
    const now = await readA(net, "GET", `/event/${enc(early.eventId)}`);
    assert.equal(now.status, 200);
    assert.equal((now.body.pdus as JsonObject[])[0].redacts, late.eventId);
    assert.ok((await backfill()).includes(early.eventId));
    assert.deepEqual(await missing(), [early.eventId]);
    assert.equal((await readA(net, "GET", `/event/${enc(forbidden.eventId)}`)).status, 404);
  } finally {
    await net.close();
  }
});
