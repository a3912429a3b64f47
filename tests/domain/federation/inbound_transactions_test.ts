/**
 * Inbound transactions over a fake PDU handler and fake room reads, with the real KV answer
 * store: a result per PDU, answered once per (origin, txnId), rooms we are not in and servers
 * the room's ACL denies refused before any check.
 */
import { assert, assertEquals } from "../../assert.ts";
import { TransactionReceiver } from "../../../domain/federation/inbound_transactions.ts";
import type { PduInput, PduOutcome } from "../../../domain/federation/pdu_input/types.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import type { RoomHeadView, StoredEvent } from "../../../domain/ports/event_store.ts";
import { KvInboundTransactionStore } from "../../../kv/inbound_transaction_store.ts";

const ROOM = "!room:a.test";
const DENYING = "!acl:a.test";

/** Room reads: two rooms, the second with an ACL denying evil.test. */
const store = {
  roomHead: (roomId: string): Promise<RoomHeadView | null> =>
    Promise.resolve(
      roomId === ROOM || roomId === DENYING
        ? {
          roomId,
          roomVersion: "1",
          firstPosition: 1,
          lastPosition: 1,
          forwardExtremities: [],
          currentStateId: "s",
          versionstamp: "v",
        }
        : null,
    ),
  currentStateEventId: (roomId: string, type: string) =>
    Promise.resolve(roomId === DENYING && type === "m.room.server_acl" ? "$acl:a.test" : null),
  getEvent: (eventId: string): Promise<StoredEvent | null> =>
    Promise.resolve(
      eventId === "$acl:a.test"
        ? {
          eventId,
          roomId: DENYING,
          pdu: { content: { allow: ["*"], deny: ["evil.test"] } } as unknown as Pdu,
          status: "accepted",
          position: 1,
          versionstamp: "v",
        }
        : null,
    ),
};

/**
 * A PDU handler recording calls; an event whose body says "bad" is dropped, one saying "no" is
 * stored rejected.
 */
function fakeInput() {
  const calls: string[] = [];
  const input: PduInput = {
    handle(origin, roomId, pdu) {
      const p = pdu as { event_id: string; content: { body: string } };
      calls.push(`${origin} ${roomId} ${p.event_id}`);
      const outcome: PduOutcome = p.content.body === "bad"
        ? { eventId: p.event_id, error: "x".repeat(1000) }
        : p.content.body === "no"
        ? { eventId: p.event_id, status: "rejected", error: "not allowed" }
        : { eventId: p.event_id, status: "accepted" };
      return Promise.resolve(outcome);
    },
  };
  return { input, calls };
}

const pdu = (id: string, roomId = ROOM, body = "hi") => ({
  event_id: `$${id}:b.test`,
  room_id: roomId,
  content: { body },
});

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const { input, calls } = fakeInput();
  const receiver = new TransactionReceiver({
    pduInput: input,
    answers: new KvInboundTransactionStore(kv),
    store,
  });
  return { kv, receiver, calls };
}

Deno.test("transactions: a result per PDU (stored ones {}), errors shortened, unknown rooms and ACL denials refused", async () => {
  const { kv, receiver, calls } = await setup();
  try {
    const answer = await receiver.receive("b.test", "t1", {
      pdus: [
        pdu("1"),
        pdu("2", ROOM, "bad"),
        pdu("3", "!elsewhere:c.test"),
        { no: "room" },
        pdu("5", ROOM, "no"),
      ],
      edus: [{ edu_type: "m.typing", content: {} }],
    });
    assertEquals(Object.keys(answer.pdus).sort(), [
      "$1:b.test",
      "$2:b.test",
      "$3:b.test",
      "$5:b.test",
    ]);
    // Stored, though rejected: handled.
    assertEquals(answer.pdus["$5:b.test"], {});
    assertEquals(answer.pdus["$1:b.test"], {});
    assertEquals(answer.pdus["$2:b.test"].error!.length, 400);
    assertEquals(answer.pdus["$3:b.test"], {
      error: "this server is not in room !elsewhere:c.test",
    });
    assertEquals(calls, [
      "b.test !room:a.test $1:b.test",
      "b.test !room:a.test $2:b.test",
      "b.test !room:a.test $5:b.test",
    ]);

    const denied = await receiver.receive("evil.test", "t1", {
      pdus: [pdu("4", DENYING)],
      edus: [],
    });
    assertEquals(denied.pdus["$4:b.test"], {
      error: "server evil.test is denied by the room's server ACL",
    });
    assertEquals(calls.length, 3);
  } finally {
    kv.close();
  }
});

Deno.test("transactions: a retried transaction gets its first answer and is not handled again", async () => {
  const { kv, receiver, calls } = await setup();
  try {
    const txn = { pdus: [pdu("1"), pdu("2")], edus: [] };
    const [first, concurrent] = await Promise.all([
      receiver.receive("b.test", "t1", txn),
      receiver.receive("b.test", "t1", txn),
    ]);
    const again = await receiver.receive("b.test", "t1", { pdus: [pdu("9")], edus: [] });
    assertEquals(concurrent, first);
    assertEquals(again, first);
    assertEquals(calls.length, 2);
    // The same ID from another server is another transaction.
    await receiver.receive("c.test", "t1", txn);
    assertEquals(calls.length, 4);
    // A second process over the same KV answers from the stored answer too.
    const other = new TransactionReceiver({
      pduInput: fakeInput().input,
      answers: new KvInboundTransactionStore(kv),
      store,
    });
    assertEquals(await other.receive("b.test", "t1", txn), first);
  } finally {
    kv.close();
  }
});

Deno.test("transactions: PDUs of one room are handled in the order sent", async () => {
  const { kv, receiver, calls } = await setup();
  try {
    const ids = Array.from({ length: 20 }, (_, i) => String(i));
    await receiver.receive("b.test", "t2", { pdus: ids.map((id) => pdu(id)), edus: [] });
    assertEquals(calls, ids.map((id) => `b.test !room:a.test $${id}:b.test`));
  } finally {
    kv.close();
  }
});

Deno.test("transactions: one origin's are handled one at a time; a flood beyond the few waiting gets 429", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const started: string[] = [];
    const gates = new Map<string, () => void>();
    const input: PduInput = {
      async handle(origin, _roomId, raw) {
        const id = (raw as { event_id: string }).event_id;
        started.push(`${origin} ${id}`);
        await new Promise<void>((release) => gates.set(id, release));
        return { eventId: id, status: "accepted" };
      },
    };
    const receiver = new TransactionReceiver({
      pduInput: input,
      answers: new KvInboundTransactionStore(kv),
      store,
    });
    const send = (origin: string, txnId: string) =>
      receiver.receive(origin, txnId, { pdus: [pdu(`${origin}-${txnId}`)], edus: [] });
    const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

    const first = send("b.test", "t1");
    const second = send("b.test", "t2");
    const other = send("c.test", "t1");
    await settle();
    // b.test's second waits for its first; c.test is not held up by b.test.
    assertEquals(started.sort(), ["b.test $b.test-t1:b.test", "c.test $c.test-t1:b.test"]);

    // Four may wait behind the running one (t2 to t5); the next is refused unhandled.
    const waiting = [3, 4, 5].map((n) => send("b.test", `t${n}`));
    let refusal: unknown;
    await send("b.test", "t6").catch((error) => refusal = error);
    assertEquals((refusal as { errcode?: string; status?: number }).errcode, "M_LIMIT_EXCEEDED");
    assertEquals((refusal as { status?: number }).status, 429);

    gates.get("$b.test-t1:b.test")!();
    await first;
    await settle();
    assert(started.includes("b.test $b.test-t2:b.test"));
    gates.get("$c.test-t1:b.test")!();
    await other;
    for (let n = 2; n <= 5; n++) {
      await settle();
      gates.get(`$b.test-t${n}:b.test`)!();
    }
    await Promise.all([second, ...waiting]);
    // The lane is gone once drained: a later transaction runs at once.
    const later = send("b.test", "t7");
    await settle();
    gates.get("$b.test-t7:b.test")!();
    await later;
  } finally {
    kv.close();
  }
});
