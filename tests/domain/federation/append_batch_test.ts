/** The append batch of the incoming-PDU handler: held until flushed, in order, failures contained. */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { AppendBatch } from "../../../domain/federation/pdu_input/append_batch.ts";
import type { PduOutcome } from "../../../domain/federation/pdu_input/types.ts";

/** An issue function recording when it ran. */
function recorder(log: string[], eventId: string, fail = false) {
  return (): Promise<PduOutcome> => {
    log.push(eventId);
    return fail
      ? Promise.reject(new Error("storage failed"))
      : Promise.resolve({ eventId, status: "accepted" });
  };
}

Deno.test("append batch: held appends start only on flush, in the order added", async () => {
  const log: string[] = [];
  const batch = new AppendBatch(false);
  const a = batch.add("$a", recorder(log, "$a"));
  const b = batch.add("$b", recorder(log, "$b"));
  assertEquals(log, []);
  assert(batch.has("$a") && !batch.has("$c"));
  batch.flush();
  assertEquals(log, ["$a", "$b"]);
  assertEquals((await a).eventId, "$a");
  assertEquals((await b).eventId, "$b");
});

Deno.test("append batch: immediate appends start at once; settle flushes and waits", async () => {
  const log: string[] = [];
  const now = new AppendBatch(true);
  const a = now.add("$a", recorder(log, "$a"));
  assertEquals(log, ["$a"]);
  await a;

  const held = new AppendBatch(false);
  held.add("$b", recorder(log, "$b"));
  await held.settle(["$b"]);
  assertEquals(log, ["$a", "$b"]);
  assertEquals(await held.outcome("$b"), { eventId: "$b", status: "accepted" });
});

Deno.test("append batch: a failed append rejects its own promise, and waiting on it does not", async () => {
  const log: string[] = [];
  const batch = new AppendBatch(false);
  const failing = batch.add("$a", recorder(log, "$a", true));
  const fine = batch.add("$b", recorder(log, "$b"));
  await batch.settle();
  await assertRejects(() => failing);
  assertEquals(await batch.outcome("$a"), {
    eventId: "$a",
    error: "the event could not be stored",
  });
  assertEquals((await fine).status, "accepted");
});
