import { assert, assertEquals, assertRejects } from "../assert.ts";
import { ALICE, BOB, createPublicRoom, openRoomFixture, SERVER } from "./room_fixture.ts";
import { stateKey } from "../../domain/protocol/events.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { checkContentHash } from "../../domain/protocol/hashing.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import { verifyEventSignature } from "../../domain/protocol/event_signing.ts";
import { MatrixError } from "../../domain/errors.ts";
import { LocalEventSender } from "../../domain/local_event_sender.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { signingKeyFromSeed } from "../../domain/protocol/signing.ts";

for (const version of ["1", "6", "10", "11", "12"]) {
  Deno.test(`v${version}: a room built by the sender has signed, hashed events and a linear DAG`, async () => {
    const { store, sender, signingKey, close } = await openRoomFixture();
    try {
      const roomId = await createPublicRoom(sender, version);
      const state = await store.currentState(roomId);
      for (const key of ["m.room.create", "m.room.power_levels", "m.room.join_rules"]) {
        assert(state.has(stateKey(key, "")), key);
      }
      assert(state.has(stateKey("m.room.member", ALICE)));
      assertEquals((await store.members(roomId, ["join"])).map((m) => m.userId), [ALICE]);

      const rv = roomVersion(version)!;
      const page = await store.timeline(roomId, { dir: "f", limit: 10 });
      assertEquals(page.events.length, 4);
      let previous: string | undefined;
      for (const stored of page.events) {
        assert(checkContentHash(stored.pdu, rv), "content hash");
        assert(
          await verifyEventSignature(
            stored.pdu,
            rv,
            SERVER,
            signingKey.keyId,
            signingKey.publicKey,
          ),
        );
        assertEquals(computeEventId(stored.pdu, rv), stored.eventId);
        const prevs = (stored.pdu.prev_events as unknown[]).map((p) => Array.isArray(p) ? p[0] : p);
        assertEquals(prevs, previous ? [previous] : []);
        previous = stored.eventId;
      }
      if (version === "12") assertEquals(roomId, `!${page.events[0].eventId.slice(1)}`);
    } finally {
      close();
    }
  });
}

Deno.test("a member at power level 0 raising its own level is refused and nothing is written", async () => {
  const { store, sender, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "10");
    await sender.send({
      roomId,
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    const before = await store.roomHead(roomId);
    const error = await sender.send({
      roomId,
      sender: BOB,
      type: "m.room.power_levels",
      stateKey: "",
      content: { users: { [ALICE]: 100, [BOB]: 100 } },
    }).catch((e) => e);
    assert(error instanceof MatrixError);
    assertEquals(error.errcode, "M_FORBIDDEN");
    assertEquals(error.status, 403);
    assert(
      /power level 0 is below the 50 needed to change power levels/.test(error.message),
      error.message,
    );
    const after = await store.roomHead(roomId);
    assertEquals(after?.lastPosition, before?.lastPosition);
    assertEquals(after?.versionstamp, before?.versionstamp);
  } finally {
    close();
  }
});

Deno.test("concurrent local sends to one room chain into one line with no gaps", async () => {
  const { store, sender, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "12");
    const sends = Array.from(
      { length: 40 },
      (_, i) =>
        sender.send({
          roomId,
          sender: ALICE,
          type: "m.room.message",
          content: { body: `m${i}`, msgtype: "m.text" },
        }),
    );
    const sent = await Promise.all(sends);
    const head = await store.roomHead(roomId);
    assertEquals(head?.forwardExtremities.length, 1);
    const positions = sent.map((s) => s.appended.position).sort((a, b) => a - b);
    assertEquals(positions, Array.from({ length: 40 }, (_, i) => positions[0] + i));
    const page = await store.timeline(roomId, { dir: "f", limit: 100 });
    for (let i = 1; i < page.events.length; i++) {
      assertEquals(page.events[i].pdu.prev_events, [page.events[i - 1].eventId]);
    }
  } finally {
    close();
  }
});

Deno.test("sending into an unknown room is M_NOT_FOUND", async () => {
  const { sender, close } = await openRoomFixture();
  try {
    await assertRejects(
      () =>
        sender.send({
          roomId: "!nope:example.org",
          sender: ALICE,
          type: "m.room.message",
          content: {},
        }),
      /Unknown room/,
    );
  } finally {
    close();
  }
});

Deno.test("a sender's cached room view is dropped when another writer appends", async () => {
  const { store, sender, signingKey, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "11");
    await sender.send({
      roomId,
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    await sender.send({ roomId, sender: BOB, type: "m.room.message", content: { body: "cached" } });
    // Another process (a second sender on the same store) bans Bob.
    const other = new LocalEventSender({ store, serverName: SERVER, signingKey });
    await other.send({
      roomId,
      sender: ALICE,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "ban" },
    });
    const refused = await sender.send({
      roomId,
      sender: BOB,
      type: "m.room.message",
      content: { body: "late" },
    })
      .catch((e) => e);
    assert(refused instanceof MatrixError);
    assertEquals(refused.errcode, "M_FORBIDDEN");
    // And the next event builds on the other writer's event, not on the stale tip.
    const next = await sender.send({
      roomId,
      sender: ALICE,
      type: "m.room.message",
      content: { body: "after" },
    });
    const ban = await store.currentStateEventId(roomId, "m.room.member", BOB);
    assertEquals(next.pdu.prev_events, [ban!]);
  } finally {
    close();
  }
});

Deno.test("64 concurrent joins with long user IDs all commit", async () => {
  const { store, sender, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "12");
    // Long user IDs, as bridges make them: the keys of 64 joins outgrow one commit.
    const users = Array.from(
      { length: 64 },
      (_, i) => `@${"bridged_user_".repeat(6)}${i}:example.org`,
    );
    const joins = await Promise.all(
      users.map((user) =>
        sender.send({
          roomId,
          sender: user,
          type: "m.room.member",
          stateKey: user,
          content: { membership: "join" },
        })
      ),
    );
    assertEquals(new Set(joins.map((j) => j.eventId)).size, 64);
    const members = await store.members(roomId, ["join"]);
    assertEquals(members.length, 65);
    assertEquals((await store.roomHead(roomId))?.forwardExtremities.length, 1);
  } finally {
    close();
  }
});

Deno.test("concurrent v12 room creations by one user in one millisecond get distinct rooms", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:test");
    // A frozen clock: every create would otherwise hash to the same room ID.
    const frozen = new LocalEventSender({
      store,
      serverName: SERVER,
      signingKey,
      now: () => 5_000,
    });
    const rooms = await Promise.all(
      Array.from({ length: 10 }, () => frozen.createRoom({ version: "12", creator: ALICE })),
    );
    assertEquals(new Set(rooms.map((r) => r.roomId)).size, 10);
    // Another process with the same frozen clock collides in the store and moves on.
    const other = new LocalEventSender({ store, serverName: SERVER, signingKey, now: () => 5_000 });
    const again = await other.createRoom({ version: "12", creator: ALICE });
    assert(!rooms.some((r) => r.roomId === again.roomId));
    assertEquals(again.event.appended.duplicate, false);
  } finally {
    kv.close();
  }
});
