/**
 * The EDU dispatcher (domain/federation/edu_input.ts) and the transaction receiver handing a
 * transaction's EDUs to it: EDUs of one type in the order sent while types run side by side,
 * unknown types and malformed EDUs dropped, a failing handler costing only its own EDU, and the
 * receiver handing EDUs over after the PDUs and before the answer is recorded, once per answered
 * transaction.
 */
import { assertEquals } from "../../assert.ts";
import { EduDispatcher, type EduHandler } from "../../../domain/federation/edu_input.ts";
import { TransactionReceiver } from "../../../domain/federation/inbound_transactions.ts";
import type { PduInput } from "../../../domain/federation/pdu_input/types.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { RoomHeadView } from "../../../domain/ports/event_store.ts";
import type { InboundTransactionStore } from "../../../domain/ports/inbound_transaction_store.ts";

/** A handler writing `<type> <origin> <n>` to `log` for each EDU. */
function recorder(type: string, log: string[]): EduHandler {
  return {
    handle(origin, content) {
      log.push(`${type} ${origin} ${content.n}`);
      return Promise.resolve();
    },
  };
}

Deno.test("EDU dispatcher: one type in the order sent, one after another; types side by side", async () => {
  const log: string[] = [];
  let releaseFirst!: () => void;
  const firstMayEnd = new Promise<void>((resolve) => releaseFirst = resolve);
  const dispatcher = new EduDispatcher()
    .register("m.a", {
      async handle(_origin, content) {
        log.push(`a${content.n} start`);
        // The first m.a EDU waits for the m.b handler: were types run one after another,
        // this would never end (and Deno fails a test whose promises can no longer settle).
        if (content.n === 1) await firstMayEnd;
        log.push(`a${content.n} end`);
      },
    })
    .register("m.b", {
      handle(_origin, content) {
        log.push(`b${content.n}`);
        releaseFirst();
        return Promise.resolve();
      },
    });
  await dispatcher.receive("b.test", [
    { edu_type: "m.a", content: { n: 1 } },
    { edu_type: "m.a", content: { n: 2 } },
    { edu_type: "m.b", content: { n: 1 } },
    { edu_type: "m.a", content: { n: 3 } },
  ]);
  assertEquals(log, [
    "a1 start",
    "b1",
    "a1 end",
    "a2 start",
    "a2 end",
    "a3 start",
    "a3 end",
  ]);
});

Deno.test("EDU dispatcher: unknown types and malformed EDUs are dropped, the rest handled", async () => {
  const log: string[] = [];
  const dispatcher = new EduDispatcher().register("m.typing", recorder("typing", log));
  assertEquals(dispatcher.handles("m.typing"), true);
  assertEquals(dispatcher.handles("m.unknown"), false);
  await dispatcher.receive("b.test", [
    { edu_type: "m.unknown", content: { n: 0 } },
    { edu_type: "m.typing", content: { n: 1 } },
    "not an object",
    null,
    { edu_type: 7, content: { n: 2 } },
    { edu_type: "m.typing", content: ["not", "an", "object"] },
    { edu_type: "m.typing" },
    { content: { n: 3 } },
    { edu_type: "m.typing", content: { n: 4 } },
  ]);
  assertEquals(log, ["typing b.test 1", "typing b.test 4"]);
});

Deno.test("EDU dispatcher: a failing handler costs only its own EDU, logged, never thrown", async () => {
  const log: string[] = [];
  const failures: unknown[][] = [];
  const dispatcher = new EduDispatcher((...args) => failures.push(args))
    .register("m.receipt", {
      handle(origin, content) {
        if (content.n === 2) return Promise.reject(new Error("storage failed"));
        if (content.n === 3) throw new Error("thrown before any await");
        log.push(`receipt ${origin} ${content.n}`);
        return Promise.resolve();
      },
    })
    .register("m.typing", recorder("typing", log));
  await dispatcher.receive("c.test", [
    { edu_type: "m.receipt", content: { n: 1 } },
    { edu_type: "m.receipt", content: { n: 2 } },
    { edu_type: "m.typing", content: { n: 1 } },
    { edu_type: "m.receipt", content: { n: 3 } },
    { edu_type: "m.receipt", content: { n: 4 } },
  ]);
  assertEquals(log.sort(), ["receipt c.test 1", "receipt c.test 4", "typing c.test 1"]);
  assertEquals(failures.length, 2);
  assertEquals(String(failures[0][0]).includes("m.receipt"), true);
  assertEquals(String(failures[0][0]).includes("c.test"), true);
});

Deno.test("EDU dispatcher: a second registration of a type replaces the first", async () => {
  const log: string[] = [];
  const dispatcher = new EduDispatcher()
    .register("m.typing", recorder("old", log))
    .register("m.typing", recorder("new", log));
  await dispatcher.receive("b.test", [{ edu_type: "m.typing", content: { n: 1 } }]);
  assertEquals(log, ["new b.test 1"]);
});

const ROOM = "!room:a.test";

/** A receiver over a recording PDU handler, answer store and dispatcher, all writing to `log`. */
function receiverWith(log: string[], options: { failPdu?: string } = {}) {
  const answers = new Map<string, JsonObject>();
  const answerStore: InboundTransactionStore = {
    answer: (origin, txnId) => Promise.resolve(answers.get(`${origin} ${txnId}`) ?? null),
    recordAnswer: (origin, txnId, answer) => {
      log.push(`answer ${txnId}`);
      answers.set(`${origin} ${txnId}`, answer);
      return Promise.resolve();
    },
  };
  const pduInput: PduInput = {
    async handle(_origin, _roomId, pdu) {
      const { event_id: eventId } = pdu as { event_id: string };
      // A PDU taking a while (fetching missing events, say) still comes before the EDUs.
      await Promise.resolve();
      await Promise.resolve();
      if (eventId === options.failPdu) throw new Error("storage failed");
      log.push(`pdu ${eventId}`);
      return { eventId, status: "accepted" };
    },
  };
  const head: RoomHeadView = {
    roomId: ROOM,
    roomVersion: "1",
    firstPosition: 1,
    lastPosition: 1,
    forwardExtremities: [],
    currentStateId: "s",
    versionstamp: "v",
  };
  const dispatcher = new EduDispatcher(() => {})
    .register("m.receipt", recorder("edu", log));
  return new TransactionReceiver({
    pduInput,
    answers: answerStore,
    store: {
      roomHead: (roomId) => Promise.resolve(roomId === ROOM ? head : null),
      currentStateEventId: () => Promise.resolve(null),
      getEvent: () => Promise.resolve(null),
    },
    edus: dispatcher,
  });
}

const pdu = (id: string, roomId = ROOM) => ({ event_id: id, room_id: roomId, content: {} });
const receiptEdu = (n: number) => ({ edu_type: "m.receipt", content: { n } });

Deno.test("transaction receiver: EDUs go to the dispatcher after the PDUs, before the answer is recorded", async () => {
  const log: string[] = [];
  const receiver = receiverWith(log);
  await receiver.receive("b.test", "t1", {
    pdus: [pdu("$1"), pdu("$2"), pdu("$3", "!other:a.test")],
    edus: [receiptEdu(1), receiptEdu(2)],
  });
  assertEquals(log, ["pdu $1", "pdu $2", "edu b.test 1", "edu b.test 2", "answer t1"]);

  // An answered transaction sent again gets its answer; its EDUs are not handled twice.
  await receiver.receive("b.test", "t1", { pdus: [pdu("$1")], edus: [receiptEdu(1)] });
  assertEquals(log.length, 5);
});

Deno.test("transaction receiver: a PDU failing in storage does not cost the transaction's EDUs", async () => {
  const log: string[] = [];
  const receiver = receiverWith(log, { failPdu: "$1" });
  const answer = await receiver.receive("b.test", "t2", {
    pdus: [pdu("$1"), pdu("$2")],
    edus: [receiptEdu(7)],
  });
  assertEquals(answer.pdus["$1"], { error: "internal error handling the event" });
  assertEquals(log, ["pdu $2", "edu b.test 7", "answer t2"]);
});

Deno.test("transaction receiver: a transaction of EDUs alone hands them over", async () => {
  const log: string[] = [];
  const receiver = receiverWith(log);
  const answer = await receiver.receive("c.test", "t3", { pdus: [], edus: [receiptEdu(1)] });
  assertEquals(answer, { pdus: {} });
  assertEquals(log, ["edu c.test 1", "answer t3"]);
});
