import { assert, assertEquals } from "../../assert.ts";
import { ALICE, BOB, CAROL, createPublicRoom, openRoomFixture, SERVER } from "../room_fixture.ts";
import { authoriseEvent } from "../../../domain/protocol/event_authorisation.ts";
import { buildEvent } from "../../../domain/protocol/event_builder.ts";
import { stateKey } from "../../../domain/protocol/events.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { SigningKey } from "../../../domain/protocol/signing.ts";
import type { EventStore } from "../../../domain/ports/event_store.ts";

/** Build an event on top of a chosen point of the DAG, as a remote or lagging server would. */
async function buildAt(
  store: EventStore,
  signingKey: SigningKey,
  roomId: string,
  prevEventId: string,
  event: { sender: string; type: string; stateKey?: string; content: JsonObject },
) {
  const version = roomVersion((await store.roomHead(roomId))!.roomVersion)!;
  const prev = (await store.getEvent(prevEventId))!;
  const state = (await store.stateAtEvent(prevEventId, "after"))!;
  const built = await buildEvent({
    version,
    roomId,
    ...event,
    prevEvents: [{ eventId: prevEventId, depth: prev.pdu.depth }],
    currentState: (key) => {
      const eventId = state.get(key);
      return eventId ? { eventId } : undefined;
    },
    serverName: SERVER,
    signingKey,
    originServerTs: 5_000,
  });
  return { ...built, version };
}

Deno.test("an event from a non-member is rejected for the right reason", async () => {
  const { store, sender, signingKey, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "12");
    const head = (await store.roomHead(roomId))!;
    const built = await buildAt(store, signingKey, roomId, head.forwardExtremities[0], {
      sender: CAROL,
      type: "m.room.message",
      content: { body: "hi" },
    });
    const verdict = await authoriseEvent(built.event, built.version, store);
    assertEquals(verdict, { status: "rejected", reason: "sender is not joined to the room" });
  } finally {
    close();
  }
});

Deno.test("an event allowed where it was sent but not by current state is soft-failed and skipped", async () => {
  const { store, sender, signingKey, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "10", { state_default: 0 });
    const bobJoin = await sender.send({
      roomId,
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    await sender.send({
      roomId,
      sender: ALICE,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "ban" },
    });
    // Bob's server had not seen the ban: his topic cites only his own join.
    const topic = await buildAt(store, signingKey, roomId, bobJoin.eventId, {
      sender: BOB,
      type: "m.room.topic",
      stateKey: "",
      content: { topic: "from a banned user" },
    });
    const verdict = await authoriseEvent(topic.event, topic.version, store);
    assertEquals(verdict.status, "soft_failed");
    assertEquals(verdict.reason, "sender is not joined to the room");

    const headBefore = (await store.roomHead(roomId))!;
    await store.append({
      roomId,
      events: [{ eventId: topic.eventId, pdu: topic.pdu, status: verdict.status }],
    });
    const headAfter = (await store.roomHead(roomId))!;
    assertEquals(headAfter.forwardExtremities, headBefore.forwardExtremities);
    assertEquals(await store.currentStateEventId(roomId, "m.room.topic", ""), null);
    assertEquals((await store.getEvent(topic.eventId))?.status, "soft_failed");
  } finally {
    close();
  }
});

Deno.test("two concurrent branches are merged by state resolution and the next send heals the fork", async () => {
  const { store, sender, signingKey, close } = await openRoomFixture();
  try {
    const roomId = await createPublicRoom(sender, "12");
    const fork = (await store.roomHead(roomId))!.forwardExtremities[0];
    const topic = await buildAt(store, signingKey, roomId, fork, {
      sender: ALICE,
      type: "m.room.topic",
      stateKey: "",
      content: { topic: "left branch" },
    });
    const name = await buildAt(store, signingKey, roomId, fork, {
      sender: ALICE,
      type: "m.room.name",
      stateKey: "",
      content: { name: "right branch" },
    });
    for (const built of [topic, name]) {
      const verdict = await authoriseEvent(built.event, built.version, store);
      assertEquals(verdict.status, "accepted");
      await store.append({
        roomId,
        events: [{ eventId: built.eventId, pdu: built.pdu, status: "accepted" }],
      });
    }
    const head = (await store.roomHead(roomId))!;
    assertEquals(new Set(head.forwardExtremities), new Set([topic.eventId, name.eventId]));
    const state = await store.currentState(roomId);
    assertEquals(state.get(stateKey("m.room.topic", "")), topic.eventId);
    assertEquals(state.get(stateKey("m.room.name", "")), name.eventId);

    const healed = await sender.send({
      roomId,
      sender: ALICE,
      type: "m.room.message",
      content: { body: "x" },
    });
    assertEquals(
      new Set(healed.pdu.prev_events as string[]),
      new Set([topic.eventId, name.eventId]),
    );
    assertEquals((await store.roomHead(roomId))!.forwardExtremities, [healed.eventId]);
    assert((await store.stateAtEvent(healed.eventId, "before"))!.has(stateKey("m.room.topic", "")));
  } finally {
    close();
  }
});
