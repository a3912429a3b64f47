/**
 * Two senders over two KV connections to one file (two processes' worth of state), with the
 * race pinned down: the second sender's event is authorised, then the first sender commits
 * (through an event hook, which runs after authorisation and before the append), then the
 * second sender appends. Its commit must be authorised against the head it lands on.
 */
import { assert, assertEquals } from "../assert.ts";
import { ALICE, BOB, CAROL, createPublicRoom, SERVER } from "./room_fixture.ts";
import { MatrixError } from "../../domain/errors.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { type LocalEventHook, LocalEventSender } from "../../domain/local_event_sender.ts";
import { signingKeyFromSeed } from "../../domain/protocol/signing.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";

/** Senders A and B on one KV file; `beforeAppendOnB` runs after B authorised an event. */
async function openTwoWriters() {
  const dir = await Deno.makeTempDir({ prefix: "tessera-two-writers-" });
  const path = `${dir}/room.kv`;
  const [kvA, kvB] = [await Deno.openKv(path), await Deno.openKv(path)];
  const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:test");
  const storeA = new KvEventStore(kvA);
  const storeB = new KvEventStore(kvB);
  let clock = 1_000;
  const now = () => clock++;
  const a = new LocalEventSender({ store: storeA, serverName: SERVER, signingKey, now });
  let beforeAppendOnB: ((type: string) => Promise<void>) | undefined;
  const hook: LocalEventHook = {
    async prepare(event) {
      await beforeAppendOnB?.(event.pdu.type);
      return undefined;
    },
  };
  const b = new LocalEventSender({
    store: storeB,
    serverName: SERVER,
    signingKey,
    now,
    eventHooks: [hook],
  });
  return {
    a,
    b,
    storeA,
    /** Run `move` (a commit through A) once, the first time B has authorised a `type` event. */
    raceOnce(type: string, move: () => Promise<unknown>) {
      let done = false;
      beforeAppendOnB = async (authorised) => {
        if (done || authorised !== type) return;
        done = true;
        await move();
      };
    },
    /** Run `move` every time B has authorised an event. */
    raceAlways(move: () => Promise<unknown>) {
      beforeAppendOnB = async () => {
        await move();
      };
    },
    async close() {
      kvA.close();
      kvB.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const member = (roomId: string, sender: string, target: string, membership: string) => ({
  roomId,
  sender,
  type: "m.room.member",
  stateKey: target,
  content: { membership } as JsonObject,
});
const message = (roomId: string, sender: string, body: string) => ({
  roomId,
  sender,
  type: "m.room.message",
  content: { msgtype: "m.text", body } as JsonObject,
});

async function refusal(promise: Promise<unknown>): Promise<MatrixError> {
  const error = await promise.then(() => undefined, (e) => e);
  assert(error instanceof MatrixError, `expected a refusal, got ${error}`);
  return error;
}

Deno.test("a ban committed by another writer after B authorised a message refuses it", async () => {
  const w = await openTwoWriters();
  try {
    const roomId = await createPublicRoom(w.a, "10");
    await w.a.send(member(roomId, BOB, BOB, "join"));
    await w.b.send(message(roomId, BOB, "before the ban"));
    w.raceOnce("m.room.message", () => w.a.send(member(roomId, ALICE, BOB, "ban")));
    const error = await refusal(w.b.send(message(roomId, BOB, "after the ban")));
    assertEquals([error.status, error.errcode], [403, "M_FORBIDDEN"]);
    const log = (await w.storeA.timeline(roomId, { dir: "f", limit: 50 })).events;
    assertEquals(log.at(-1)?.pdu.type, "m.room.member");
    assertEquals(log.at(-1)?.pdu.content.membership, "ban");
    assertEquals((await w.storeA.roomHead(roomId))?.forwardExtremities, [log.at(-1)!.eventId]);
  } finally {
    await w.close();
  }
});

Deno.test("a moderator demoted by another writer after B authorised a kick cannot kick", async () => {
  const w = await openTwoWriters();
  try {
    const roomId = await createPublicRoom(w.a, "10", { users: { [ALICE]: 100, [BOB]: 50 } });
    await w.a.send(member(roomId, BOB, BOB, "join"));
    await w.a.send(member(roomId, CAROL, CAROL, "join"));
    w.raceOnce("m.room.member", () =>
      w.a.send({
        roomId,
        sender: ALICE,
        type: "m.room.power_levels",
        stateKey: "",
        content: { users: { [ALICE]: 100 } },
      }));
    const error = await refusal(w.b.send(member(roomId, BOB, CAROL, "leave")));
    assertEquals([error.status, error.errcode], [403, "M_FORBIDDEN"]);
    const members = await w.storeA.members(roomId, ["join"]);
    assert(members.some((m) => m.userId === CAROL), "carol is still joined");
  } finally {
    await w.close();
  }
});

Deno.test("a send that lost its head to another writer is rebuilt on the new head: no fork", async () => {
  const w = await openTwoWriters();
  try {
    const roomId = await createPublicRoom(w.a, "10");
    await w.a.send(member(roomId, BOB, BOB, "join"));
    let fromA = "";
    w.raceOnce("m.room.message", async () => {
      fromA = (await w.a.send(message(roomId, ALICE, "from A"))).eventId;
    });
    const sent = await w.b.send(message(roomId, BOB, "from B"));
    assertEquals(sent.pdu.prev_events, [fromA]);
    assertEquals((await w.storeA.roomHead(roomId))?.forwardExtremities, [sent.eventId]);
  } finally {
    await w.close();
  }
});

Deno.test("a send whose head keeps moving gives up with 503 M_UNKNOWN and writes nothing", async () => {
  const w = await openTwoWriters();
  try {
    const roomId = await createPublicRoom(w.a, "10");
    await w.a.send(member(roomId, BOB, BOB, "join"));
    w.raceAlways(() => w.a.send(message(roomId, ALICE, "moving the head")));
    const error = await refusal(w.b.send(message(roomId, BOB, "never lands")));
    assertEquals([error.status, error.errcode], [503, "M_UNKNOWN"]);
    const log = (await w.storeA.timeline(roomId, { dir: "f", limit: 100 })).events;
    assert(!log.some((e) => e.pdu.sender === BOB && e.pdu.type === "m.room.message"));
  } finally {
    await w.close();
  }
});
