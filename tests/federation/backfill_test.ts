/**
 * /messages backfills from other servers: history made on A before B's user joined reaches B's
 * client by paging back, in order, with positions below B's first and B's current state
 * untouched.
 */
import { assert, assertEquals } from "../assert.ts";
import { type NetworkServer, startNetwork } from "./in_process_network.ts";
import { RemoteView } from "./remote_view.ts";
import { createRoom, joinThrough, sharedPublicRoom } from "./network_helpers.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

const A = "a.test";
const B = "b.test";

async function send(server: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  const path = `/_matrix/client/v3/rooms/${
    encodeURIComponent(roomId)
  }/send/m.room.message/${crypto.randomUUID()}`;
  const sent = await server.request("PUT", path, {
    token: user.accessToken,
    body: { msgtype: "m.text", body },
  });
  assertEquals(sent.status, 200, JSON.stringify(sent.body));
}

/** Page back through /messages until it ends; the message bodies in the order served. */
async function pageBack(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const bodies: string[] = [];
  let from: string | undefined;
  for (let i = 0; i < 60; i++) {
    const query = `dir=b&limit=5${from ? `&from=${encodeURIComponent(from)}` : ""}`;
    const page = await server.request(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${query}`,
      { token: user.accessToken },
    );
    assertEquals(page.status, 200, JSON.stringify(page.body));
    for (const event of page.body.chunk) {
      if (event.type === "m.room.message") bodies.push(event.content.body);
    }
    if (page.body.chunk.length === 0 || page.body.end === undefined) return bodies;
    from = page.body.end;
  }
  throw new Error("/messages never ended");
}

Deno.test("backfill: history from before B joined reaches B's client through /messages", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    const history = Array.from({ length: 12 }, (_, i) => `message ${i + 1}`);
    for (const body of history) await send(a, alice, roomId, body);

    await joinThrough(b, bob, roomId, A);
    const stateBefore = await b.deps.eventStore.currentState(roomId);

    // Newest first, each once, all of them.
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assert(net.log.some((r) => r.path.startsWith("/_matrix/federation/v1/backfill/")));

    // Backfilled history sits below B's first event and leaves current state alone.
    const head = await b.deps.eventStore.roomHead(roomId);
    assert(head!.firstPosition < 1, `first position ${head!.firstPosition}`);
    assertEquals(await b.deps.eventStore.currentState(roomId), stateBefore);

    // Paging back again is served from B's store: no new backfill request reaches A.
    const requests = net.log.filter((r) => r.path.includes("/backfill/")).length;
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assertEquals(net.log.filter((r) => r.path.includes("/backfill/")).length, requests);
  } finally {
    await net.close();
  }
});

Deno.test("backfill: a history longer than one /backfill answer comes in several, across the gap", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    // More than one answer holds (100 events), so the oldest of the first answer has prev
    // events B lacks: their state comes from A's /state_ids.
    const history = Array.from({ length: 110 }, (_, i) => `message ${i + 1}`);
    for (const body of history) await send(a, alice, roomId, body);
    await joinThrough(b, bob, roomId, A);
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assert(net.log.filter((r) => r.path.includes("/backfill/")).length >= 2);
    assert(net.log.some((r) => r.path.includes("/state_ids/")));
  } finally {
    await net.close();
  }
});

Deno.test("backfill: an event with a forged signature is not stored nor shown", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    const history = ["one", "two", "three"];
    for (const body of history) await send(a, alice, roomId, body);
    await joinThrough(b, bob, roomId, A);
    // A's backfill answers are altered in flight: "two" is re-signed with a flipped signature.
    // Every answer: "three" cites "two", so paging back through "three" asks for it again.
    let forwarding = false;
    const forged = new Set<string>();
    net.intercept(async (request) => {
      if (forwarding || !request.path.includes("/backfill/")) return "deliver";
      forwarding = true;
      const real = await net.transportFor(request.origin).request(request)
        .finally(() => forwarding = false);
      const body = structuredClone(real.body) as { pdus: Record<string, unknown>[] };
      for (const pdu of body.pdus) {
        if ((pdu.content as { body?: string }).body !== "two") continue;
        const sigs = pdu.signatures as Record<string, Record<string, string>>;
        for (const byKey of Object.values(sigs)) {
          for (const k of Object.keys(byKey)) {
            byKey[k] = (byKey[k][0] === "A" ? "B" : "A") + byKey[k].slice(1);
            forged.add(byKey[k]);
          }
        }
      }
      return { status: 200, body: body as never };
    });
    const seen = await pageBack(b, bob, roomId);
    net.intercept(undefined);
    // "two" reaches B only as A signed it: through /event when B fills in the state before
    // "three", never the forged copy of the /backfill answers.
    assert(forged.size > 0);
    assertEquals(seen.filter((body) => body !== "two"), ["three", "one"]);
    const held = await b.deps.eventStore.timeline(roomId, { dir: "b", limit: 100 });
    for (const event of held.events) {
      const sigs = Object.values(event.pdu.signatures as Record<string, Record<string, string>>)
        .flatMap((byKey) => Object.values(byKey));
      assert(!sigs.some((sig) => forged.has(sig)), event.eventId);
    }
  } finally {
    await net.close();
  }
});

/** Run A's sender until `done` holds (its background loop may hold the lease meanwhile). */
async function sendUntil(server: NetworkServer, what: string, done: () => Promise<boolean>) {
  for (let i = 0; i < 300; i++) {
    await server.deps.federationSender.runOnce();
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`never happened: ${what}`);
}

Deno.test("backfill: a hole in the middle is filled by paging back through it, each event once", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await sharedPublicRoom(a, alice, b, bob, { room_version: "10" });
    const early = ["early 1", "early 2", "early 3"];
    for (const body of early) await send(a, alice, roomId, body);
    await sendUntil(a, "the early messages reach B", async () => {
      const page = await b.deps.eventStore.timeline(roomId, { dir: "b", limit: 1 });
      return page.events[0]?.pdu.content.body === "early 3";
    });

    // A's transactions to B are refused with a 4xx, which A drops (as Synapse does): B never
    // hears of these 15 messages, more than get_missing_events' 10.
    const hole = Array.from({ length: 15 }, (_, i) => `hole ${i + 1}`);
    const refused = new Set<string>();
    net.intercept((request) => {
      if (request.destination !== B || !request.path.startsWith("/_matrix/federation/v1/send/")) {
        return "deliver";
      }
      for (const pdu of (request.body as { pdus?: { content: { body?: string } }[] }).pdus ?? []) {
        if (pdu.content.body !== undefined) refused.add(pdu.content.body);
      }
      return { status: 400, body: { errcode: "M_BAD_JSON", error: "refused by the test" } };
    });
    for (const body of hole) await send(a, alice, roomId, body);
    await sendUntil(a, "every hole message refused", () => Promise.resolve(refused.size === 15));
    net.intercept(undefined);

    // The next message reaches B: get_missing_events brings the last 10, /state_ids crosses
    // the rest, and B holds a backward extremity in the middle of its log.
    const sync = await b.request("GET", "/_matrix/client/v3/sync", { token: bob.accessToken });
    assertEquals(sync.status, 200);
    await send(a, alice, roomId, "after");
    await sendUntil(a, "'after' reaches B", async () => {
      const page = await b.deps.eventStore.timeline(roomId, { dir: "b", limit: 1 });
      return page.events[0]?.pdu.content.body === "after";
    });
    const extremities = await b.deps.eventStore.backwardExtremities(roomId);
    assertEquals(extremities.size, 2, "before B's join, and hole 5");
    const synced = await b.request(
      "GET",
      `/_matrix/client/v3/sync?since=${encodeURIComponent(sync.body.next_batch)}`,
      { token: bob.accessToken },
    );
    const bodiesOf = (events: { content: { body?: string } }[]) =>
      events.flatMap((e) => e.content.body ?? []);
    const timeline = synced.body.rooms.join[roomId].timeline;
    assertEquals(bodiesOf(timeline.events).at(-1), "after");

    // Paging back meets every message once: what B held first, in order, then the hole's
    // events, fetched when the walk reached hole 6 and placed below B's first position.
    const served = await pageBack(b, bob, roomId);
    assertEquals(served, [
      "after",
      ...hole.slice(5).reverse(),
      ...early.slice().reverse(),
      ...hole.slice(0, 5).reverse(),
    ]);
    assertEquals([...(await b.deps.eventStore.backwardExtremities(roomId)).keys()], []);

    // /sync never shows fetched history as new.
    const after = await b.request(
      "GET",
      `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(synced.body.next_batch)}`,
      { token: bob.accessToken },
    );
    assertEquals(after.status, 200);
    assertEquals(after.body.rooms?.join?.[roomId]?.timeline?.events ?? [], []);
    // And paging back again asks no server: the hole is closed.
    const requests = net.log.filter((r) => r.path.includes("/backfill/")).length;
    assertEquals(await pageBack(b, bob, roomId), served);
    assertEquals(net.log.filter((r) => r.path.includes("/backfill/")).length, requests);
  } finally {
    await net.close();
  }
});

Deno.test("backfill: an answer whose event cites another room's event does not stitch the rooms", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const room1 = await sharedPublicRoom(a, alice, b, bob, { room_version: "10" });
    await send(a, alice, room1, "event P");
    await sendUntil(a, "P reaches B", async () => {
      const page = await b.deps.eventStore.timeline(room1, { dir: "b", limit: 1 });
      return page.events[0]?.pdu.content.body === "event P";
    });
    const p = (await b.deps.eventStore.timeline(room1, { dir: "b", limit: 1 })).events[0];
    const room2 = await sharedPublicRoom(a, alice, b, bob, { room_version: "10" });

    // Q: an event of room 2, signed by A, whose prev event is P of room 1 (which B holds).
    const view = new RemoteView(room2, roomVersion("10")!, A, a.deps.keyring.current);
    await view.syncFrom(a.deps.eventStore);
    const tip = (await a.deps.eventStore.roomHead(room2))!.forwardExtremities[0];
    const room2State = (await a.deps.eventStore.stateAtEvent(tip, "after"))!;
    view.events.set(p.eventId, {
      eventId: p.eventId,
      pdu: p.pdu,
      stateBefore: room2State,
      stateAfter: room2State,
    });
    const q = await view.build(p.eventId, {
      sender: alice.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "event Q" },
    });
    const room1Before = await b.deps.eventStore.timeline(room1, { dir: "b", limit: 100 });
    net.intercept((request) => {
      if (
        !request.path.startsWith(`/_matrix/federation/v1/backfill/${encodeURIComponent(room2)}`)
      ) {
        return "deliver";
      }
      return { status: 200, body: { origin: A, origin_server_ts: 0, pdus: [q.pdu] } as never };
    });
    const served = await pageBack(b, bob, room2);
    net.intercept(undefined);
    // Asked once: the pages after it reach the same unfillable hole, which B does not ask
    // about again for a while (the same page again asks nobody either).
    const asked = () => net.log.filter((r) => r.path.includes("/backfill/")).length;
    assertEquals(asked(), 1);
    assertEquals(await pageBack(b, bob, room2), []);
    assertEquals(asked(), 1);

    // Neither Q nor anything of room 1 came into room 2's timeline; room 1 is as it was; B
    // asked nobody for room 2's state at P.
    assertEquals(served, []);
    const room2Log = await b.deps.eventStore.timeline(room2, { dir: "b", limit: 100 });
    assert(!room2Log.events.some((e) => e.eventId === q.eventId || e.eventId === p.eventId));
    // Q is held at most as an outlier, checked but outside every log, not even rejected in it.
    const q2 = (await b.deps.eventStore.findEvents([q.eventId])).get(q.eventId);
    assert(q2 === undefined || q2.outlier, JSON.stringify(q2));
    assertEquals(
      (await b.deps.eventStore.timeline(room1, { dir: "b", limit: 100 })).events.map((e) =>
        e.eventId
      ),
      room1Before.events.map((e) => e.eventId),
    );
    assertEquals((await b.deps.eventStore.getEvent(p.eventId))?.roomId, room1);
    assert(!net.log.some((r) => r.path.includes("/state_ids/") && r.path.includes(p.eventId)));
    assert(!(await b.deps.eventStore.backwardExtremities(room1)).has(q.eventId));
  } finally {
    await net.close();
  }
});
