/**
 * Federation transactions on their own: what one transaction takes from a destination's stream
 * (50 PDUs, 100 EDUs, in order), its ID across retries, and what each kind of answer does to the
 * stream. The store and transport are fakes; tests/federation/ covers the real stores.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  FederationDelivery,
  type FederationPayload,
  outgoingPdu,
  planTransaction,
  transactionIdOf,
} from "../../../domain/federation/federation_transactions.ts";
import type { StoredEvent } from "../../../domain/ports/event_store.ts";
import {
  type FederationRequest,
  type FederationResponse,
  FederationUnreachable,
} from "../../../domain/ports/federation_transport.ts";
import type { OutboxEntry } from "../../../domain/ports/outbox_store.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";

const ROOM = "!room:a.test";

function pduEntry(n: number, roomId = ROOM, position = n): OutboxEntry {
  const payload: FederationPayload = {
    kind: "pdu",
    room_id: roomId,
    event_id: `$e${n}`,
    position,
  };
  return { ref: [1_000 + n, roomId, position], payload };
}

function eduEntry(n: number): OutboxEntry {
  const payload: FederationPayload = { kind: "edu", edu_type: "m.typing", content: { n } };
  return { ref: [1_000 + n, "", `edu${n}`], payload };
}

function storedEvent(eventId: string, roomId: string, status: StoredEvent["status"]): StoredEvent {
  const pdu: Pdu = {
    room_id: roomId,
    sender: "@alice:a.test",
    type: "m.room.message",
    content: { body: eventId },
    origin_server_ts: 1_000,
    depth: 1,
    prev_events: [],
    auth_events: [],
    hashes: { sha256: "x" },
    signatures: {},
    unsigned: { transaction_id: "local-only", age_ts: 5 },
  };
  return { eventId, roomId, pdu, status, position: 0, versionstamp: "0" };
}

/** A store that knows every `$eN` event (accepted unless listed in `rejected`). */
function fakeStore(rejected: string[] = []) {
  return {
    getEvents(ids: readonly string[]): Promise<Map<string, StoredEvent>> {
      const out = new Map<string, StoredEvent>();
      for (const id of ids) {
        out.set(id, storedEvent(id, ROOM, rejected.includes(id) ? "rejected" : "accepted"));
      }
      return Promise.resolve(out);
    },
  };
}

/** A transport answering from `answer` and recording every request. */
function fakeTransport(answer: (request: FederationRequest) => FederationResponse) {
  const requests: FederationRequest[] = [];
  return {
    requests,
    request(request: FederationRequest): Promise<FederationResponse> {
      requests.push(request);
      return Promise.resolve(answer(request));
    },
  };
}

function delivery(
  transport: { request(r: FederationRequest): Promise<FederationResponse> },
  options: { rejected?: string[]; logs?: string[] } = {},
) {
  return new FederationDelivery({
    store: fakeStore(options.rejected),
    transport,
    serverName: "a.test",
    now: () => 2_000,
    log: (message) => options.logs?.push(message),
  });
}

const OK = (): FederationResponse => ({ status: 200, body: { pdus: {} } });

function bodyOf(request: FederationRequest): { pdus: JsonObject[]; edus: JsonObject[] } {
  return request.body as unknown as { pdus: JsonObject[]; edus: JsonObject[] };
}

Deno.test("transaction: at most 50 PDUs, the rest left for the next one", () => {
  const entries = Array.from({ length: 120 }, (_, i) => pduEntry(i));
  const plan = planTransaction(entries);
  assertEquals(plan.taken, 50);
  assertEquals(plan.pdus.map((p) => p.eventId), entries.slice(0, 50).map((_, i) => `$e${i}`));
  assertEquals(plan.edus, []);
});

Deno.test("transaction: EDU content past the byte budget waits for the next transaction", () => {
  const big = (n: number): OutboxEntry => ({
    ref: [2_000 + n, "", `big${n}`],
    payload: { kind: "edu", edu_type: "m.direct_to_device", content: { pad: "x".repeat(60_000) } },
  });
  // 100 EDUs of 60 KB would make a 6 MB transaction; 4 MiB of content holds 69 of them.
  const plan = planTransaction(Array.from({ length: 100 }, (_, i) => big(i)));
  assertEquals(plan.edus.length, 69);
  assertEquals(plan.taken, 69);
  // One EDU larger than the whole budget still goes (alone), rather than blocking the stream.
  const alone = planTransaction([big(0), big(1)], { pdus: 50, edus: 100, eduBytes: 1_000 });
  assertEquals(alone.edus.length, 1);
});

Deno.test("transaction: at most 100 EDUs, and it stops at the first entry over a limit", () => {
  const edus = Array.from({ length: 130 }, (_, i) => eduEntry(i));
  assertEquals(planTransaction(edus).taken, 100);
  // 3 PDUs, 100 EDUs, then a PDU: the EDU limit ends the transaction before the 101st EDU even
  // though a PDU after it would still fit, so the stream's order holds across transactions.
  const mixed = [
    pduEntry(0),
    ...Array.from({ length: 50 }, (_, i) => eduEntry(i)),
    pduEntry(1),
    pduEntry(2),
    ...Array.from({ length: 51 }, (_, i) => eduEntry(100 + i)),
    pduEntry(3),
  ];
  const plan = planTransaction(mixed);
  assertEquals(plan.taken, 103);
  assertEquals(plan.pdus.map((p) => p.eventId), ["$e0", "$e1", "$e2"]);
  assertEquals(plan.edus.length, 100);
});

Deno.test("transaction: each room's PDUs go in log order, rooms interleaved as queued", () => {
  // Two processes' clocks disagreed: room X's position 7 was queued under an earlier timestamp
  // than its position 5.
  const entries = [
    pduEntry(1, "!x:a.test", 7),
    pduEntry(2, "!y:a.test", 1),
    pduEntry(3, "!x:a.test", 5),
    pduEntry(4, "!x:a.test", 6),
    pduEntry(5, "!y:a.test", 2),
  ];
  const plan = planTransaction(entries);
  assertEquals(
    plan.pdus.map((p) => `${p.roomId}/${p.position}`),
    ["!x:a.test/5", "!y:a.test/1", "!x:a.test/6", "!x:a.test/7", "!y:a.test/2"],
  );
});

Deno.test("transaction: malformed entries are taken (dropped) without being sent", () => {
  const entries: OutboxEntry[] = [
    { ref: [1], payload: { kind: "pdu", room_id: ROOM } },
    { ref: [2], payload: { kind: "something" } },
    pduEntry(3),
  ];
  const plan = planTransaction(entries);
  assertEquals(plan.taken, 3);
  assertEquals(plan.pdus.map((p) => p.eventId), ["$e3"]);
});

Deno.test("transaction ID: derived from the entries, the same for the same entries", () => {
  const refs = [pduEntry(1).ref, pduEntry(2).ref];
  assertEquals(transactionIdOf(refs), transactionIdOf([...refs]));
  assert(transactionIdOf(refs) !== transactionIdOf([refs[0]]));
  assert(/^[A-Za-z0-9_-]+$/.test(transactionIdOf(refs)));
});

Deno.test("delivery: one PUT /send/{txnId} with the PDUs in order and the EDUs", async () => {
  const transport = fakeTransport(OK);
  const entries = [pduEntry(1), eduEntry(2), pduEntry(3)];
  const outcome = await delivery(transport).deliver("b.test", entries);
  assertEquals(outcome, { done: 3 });
  assertEquals(transport.requests.length, 1);
  const [request] = transport.requests;
  assertEquals(request.method, "PUT");
  assertEquals(request.destination, "b.test");
  assertEquals(
    request.path,
    `/_matrix/federation/v1/send/${transactionIdOf(entries.map((e) => e.ref))}`,
  );
  const body = bodyOf(request);
  assertEquals((request.body as JsonObject).origin, "a.test");
  assertEquals((request.body as JsonObject).origin_server_ts, 2_000);
  assertEquals(body.pdus.map((p) => (p.content as JsonObject).body), ["$e1", "$e3"]);
  assertEquals(body.edus, [{ edu_type: "m.typing", content: { n: 2 } }]);
  // What concerns only our clients stays here; the age is the receiver's to know.
  assertEquals(body.pdus[0].unsigned, { age: 1_000 });
});

Deno.test("delivery: a retried transaction keeps its ID; failures back off", async () => {
  let fail = 2;
  const transport = fakeTransport(() =>
    fail-- > 0 ? { status: 502, body: null } : { status: 200, body: { pdus: {} } }
  );
  const sender = delivery(transport);
  const entries = [pduEntry(1), pduEntry(2)];
  assertEquals(await sender.deliver("b.test", entries), { done: 0, failed: true });
  assertEquals(await sender.deliver("b.test", entries), { done: 0, failed: true });
  assertEquals(await sender.deliver("b.test", entries), { done: 2 });
  const paths = transport.requests.map((r) => r.path);
  assertEquals(paths.length, 3);
  assertEquals(new Set(paths).size, 1);
});

Deno.test("delivery: no answer, 408 and 429 back off; a refused destination is dropped", async () => {
  const unreachable = {
    request: (r: FederationRequest): Promise<FederationResponse> =>
      Promise.reject(new FederationUnreachable("network", r.destination, "connection reset")),
  };
  assertEquals(await delivery(unreachable).deliver("b.test", [pduEntry(1)]), {
    done: 0,
    failed: true,
  });
  for (const status of [408, 429, 500, 503]) {
    const transport = fakeTransport(() => ({ status, body: null }));
    assertEquals(await delivery(transport).deliver("b.test", [pduEntry(1)]), {
      done: 0,
      failed: true,
    });
  }
  // A private address or a bad name is refused every time: retrying cannot help.
  const refused = {
    request: (r: FederationRequest): Promise<FederationResponse> =>
      Promise.reject(new FederationUnreachable("refused", r.destination, "private address")),
  };
  const logs: string[] = [];
  assertEquals(await delivery(refused, { logs }).deliver("b.test", [pduEntry(1)]), { done: 1 });
  assert(logs.some((l) => l.includes("refused")));
});

Deno.test("delivery: a 4xx on the whole transaction drops it (the same request would fail)", async () => {
  for (const status of [400, 401, 403, 404]) {
    const logs: string[] = [];
    const transport = fakeTransport(() => ({ status, body: { errcode: "M_FORBIDDEN" } }));
    const outcome = await delivery(transport, { logs }).deliver("b.test", [
      pduEntry(1),
      pduEntry(2),
    ]);
    assertEquals(outcome, { done: 2 }, String(status));
    assert(logs.some((l) => l.includes(`answered ${status}, dropped`)));
  }
});

Deno.test("delivery: per-PDU errors are logged, not retried", async () => {
  const logs: string[] = [];
  const transport = fakeTransport(() => ({
    status: 200,
    body: { pdus: { "$e1": {}, "$e2": { error: "Forbidden: not allowed" } } },
  }));
  const outcome = await delivery(transport, { logs }).deliver("b.test", [
    pduEntry(1),
    pduEntry(2),
  ]);
  assertEquals(outcome, { done: 2 });
  assertEquals(logs.length, 1);
  assert(logs[0].includes("$e2") && logs[0].includes("b.test"));
});

Deno.test("delivery: only accepted events leave; nothing to send, nothing requested", async () => {
  const transport = fakeTransport(OK);
  const sender = delivery(transport, { rejected: ["$e1"] });
  assertEquals(await sender.deliver("b.test", [pduEntry(1)]), { done: 1 });
  assertEquals(transport.requests.length, 0);
  assertEquals(await sender.deliver("b.test", [pduEntry(1), pduEntry(2)]), { done: 2 });
  assertEquals(bodyOf(transport.requests[0]).pdus.length, 1);
});

Deno.test("outgoing PDU: the stored PDU with unsigned.age, local-only keys removed", () => {
  const pdu = storedEvent("$x", ROOM, "accepted").pdu as unknown as JsonObject;
  const out = outgoingPdu(pdu, 1_500);
  assertEquals(out.unsigned, { age: 500 });
  assertEquals(out.content, pdu.content);
  assertEquals(out.signatures, pdu.signatures);
});
