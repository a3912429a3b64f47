import assert from "node:assert/strict";
import type { AppendRequest, AppendResult, NewEvent } from "../../domain/ports/event_store.ts";
import { LocalEventSender } from "../../domain/local_event_sender.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { ALICE, createPublicRoom, openRoomFixture, SERVER } from "../domain/room_fixture.ts";

const BOB = "@bob:remote.test";
const MALLORY = "@mallory:remote.test";

let made = 0;

/** A remote event (its checks on receipt before these are part 5's), citing `prev`. */
function remote(
  roomId: string,
  sender: string,
  type: string,
  content: JsonObject,
  prev: string[],
  stateKey?: string,
): NewEvent {
  made++;
  return {
    eventId: `$remote${made}`,
    status: "accepted",
    checkState: true,
    pdu: {
      room_id: roomId,
      sender,
      type,
      content,
      origin_server_ts: 2_000_000 + made,
      depth: 100 + made,
      prev_events: prev,
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      ...(stateKey === undefined ? {} : { state_key: stateKey }),
    },
  };
}

async function extremities(store: KvEventStore, roomId: string): Promise<string[]> {
  return (await store.roomHead(roomId))!.forwardExtremities;
}

Deno.test("checkState: accepted, rejected against the state before, soft-failed against current", async () => {
  const { store, sender, close } = await openRoomFixture();
  const roomId = await createPublicRoom(sender, "10");
  const join = remote(
    roomId,
    BOB,
    "m.room.member",
    { membership: "join" },
    await extremities(store, roomId),
    BOB,
  );
  const hello = remote(roomId, BOB, "m.room.message", { body: "hello" }, [join.eventId]);
  // Mallory never joined: the state before her message refuses it.
  const intruder = remote(roomId, MALLORY, "m.room.message", { body: "hi" }, [join.eventId]);
  const first = await store.append({ roomId, events: [join, hello, intruder] });
  assert.deepEqual(first.events.map((e) => e.status), ["accepted", "accepted", "rejected"]);

  const ban = await sender.send({
    roomId,
    sender: ALICE,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership: "ban" },
  });
  // Built before Bob saw the ban: allowed by the state before it, not by current state.
  const late = remote(roomId, BOB, "m.room.message", { body: "sent before the ban" }, [
    hello.eventId,
  ]);
  const result = await store.append({ roomId, events: [late] });
  assert.equal(result.events[0].status, "soft_failed");
  assert.deepEqual(await extremities(store, roomId), [ban.eventId]);
  assert.equal(await store.currentStateEventId(roomId, "m.room.member", BOB), ban.eventId);
  const page = await store.timeline(roomId, { dir: "b", limit: 3 });
  assert.deepEqual(page.events.map((e) => e.eventId), [ban.eventId, hello.eventId, join.eventId]);
  close();
});

Deno.test("checkState races a local ban through LocalEventSender: decided on the state committed", async () => {
  const outcomes = new Set<string>();
  for (let round = 0; round < 8; round++) {
    const { store, signingKey, close } = await openRoomFixture();
    const remoteFirst = round % 2 === 0;
    const race: { message?: NewEvent; append?: Promise<AppendResult> } = {};
    // The sender's store: when the ban goes to the room's queue, the remote event follows it at
    // once (or went first), so both meet in the per-room queue whatever the timing.
    const racing = new Proxy(store, {
      get(target, prop) {
        if (prop === "append") {
          return (request: AppendRequest) => {
            const isBan = request.events[0].pdu.content.membership === "ban";
            if (!isBan || !race.message || race.append) return target.append(request);
            const message = race.message;
            if (remoteFirst) {
              race.append = target.append({ roomId: request.roomId, events: [message] });
            }
            const ban = target.append(request);
            race.append ??= target.append({ roomId: request.roomId, events: [message] });
            return ban;
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    let clock = 5_000;
    const sender = new LocalEventSender({
      store: racing,
      serverName: SERVER,
      signingKey,
      now: () => clock++,
    });
    const roomId = await createPublicRoom(sender, "10");
    const join = remote(
      roomId,
      BOB,
      "m.room.member",
      { membership: "join" },
      await extremities(store, roomId),
      BOB,
    );
    await store.append({ roomId, events: [join] });
    race.message = remote(roomId, BOB, "m.room.message", { body: "race" }, [join.eventId]);
    const ban = await sender.send({
      roomId,
      sender: ALICE,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "ban" },
    });
    const at = (await race.append!).events[0];
    const banAt = (await store.getEvent(ban.eventId))!.position;
    assert.equal(at.status, at.position > banAt ? "soft_failed" : "accepted", `round ${round}`);
    outcomes.add(at.status);
    assert.equal(await store.currentStateEventId(roomId, "m.room.member", BOB), ban.eventId);
    close();
  }
  // Both orders happened, each decided on the state its commit landed on.
  assert.deepEqual([...outcomes].sort(), ["accepted", "soft_failed"]);
});

Deno.test("checkState uses the injected auth rules", async () => {
  const { kv, sender, close } = await openRoomFixture();
  const roomId = await createPublicRoom(sender, "10");
  const reasons: string[] = [];
  const strict = new KvEventStore(kv, {
    authorizer: (input) => {
      reasons.push(input.event.type);
      return Promise.resolve({ allowed: false, reason: "test rules refuse everything" });
    },
  });
  const join = remote(
    roomId,
    BOB,
    "m.room.member",
    { membership: "join" },
    await extremities(strict, roomId),
    BOB,
  );
  const result = await strict.append({ roomId, events: [join] });
  assert.equal(result.events[0].status, "rejected");
  assert.deepEqual(reasons, ["m.room.member"]);
  // Without checkState the caller's status stands (local sends authorise before appending).
  const trusted = {
    ...remote(
      roomId,
      BOB,
      "m.room.member",
      { membership: "join" },
      await extremities(strict, roomId),
      BOB,
    ),
    checkState: false,
  };
  assert.equal((await strict.append({ roomId, events: [trusted] })).events[0].status, "accepted");
  close();
});
