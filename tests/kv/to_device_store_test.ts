/**
 * The KV to-device store: inbox order, transaction idempotency including resumption of a
 * request split over several commits, the acknowledgement rule of sync deliveries, the
 * per-response cap, restart safety over a file-backed KV, and removal of a device's data; a
 * request's EDUs for other servers queued exactly once, and other servers' message IDs.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvToDeviceStore } from "../../kv/to_device_store.ts";
import { e2eeKeys, outboxKeys } from "../../kv/schema.ts";
import { KvOutboxStore } from "../../kv/outbox_store.ts";
import { syncToken } from "../../kv/stream_tokens.ts";
import type {
  ToDeviceDelivery,
  ToDeviceEvent,
  ToDeviceTransaction,
} from "../../domain/ports/to_device_store.ts";
import { compareRecipients } from "../../domain/ports/to_device_store.ts";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const encoder = new TextEncoder();

function event(n: number, sender = ALICE): Uint8Array {
  return encoder.encode(JSON.stringify({ type: "m.test", sender, content: { n } }));
}

function txn(txnId: string, senderDeviceId = "ADEV"): ToDeviceTransaction {
  return { sender: ALICE, senderDeviceId, txnId };
}

/** A barrier like sync's: a commit whose versionstamp bounds what a sync reads. */
async function barrier(kv: Deno.Kv): Promise<string> {
  const result = await kv.set(["test_barrier"], Date.now());
  return syncToken(result.versionstamp);
}

async function send(store: KvToDeviceStore, txnId: string, deliveries: ToDeviceDelivery[]) {
  const commits: { versionstamp: string; userIds: string[] }[] = [];
  await store.deliver(txn(txnId), deliveries, (versionstamp, userIds) => {
    commits.push({ versionstamp, userIds });
  });
  return commits;
}

async function inbox(kv: Deno.Kv, userId: string, deviceId: string): Promise<number[]> {
  const out: number[] = [];
  const prefix = e2eeKeys.toDeviceInboxPrefix(userId, deviceId);
  for await (const entry of kv.list<Uint8Array>({ prefix })) {
    out.push(JSON.parse(new TextDecoder().decode(entry.value)).content.n);
  }
  return out;
}

const numbers = (events: ToDeviceEvent[]) => events.map((e) => e.content.n as number);

/** A device's sync loop over the store, as the sync service drives it. */
async function syncOnce(
  store: KvToDeviceStore,
  kv: Deno.Kv,
  deviceId: string,
  since: string | undefined,
  limit = 100,
) {
  const upTo = await barrier(kv);
  const events = await store.takeForSync({ userId: BOB, deviceId, since, upTo, limit });
  return { events, next: upTo };
}

Deno.test("deliveries land in each device's inbox in commit order, one commit per request", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const c1 = await send(store, "t1", [
      { userId: BOB, deviceId: "B1", event: event(1) },
      { userId: BOB, deviceId: "B2", event: event(1) },
    ]);
    const c2 = await send(store, "t2", [{ userId: BOB, deviceId: "B1", event: event(2) }]);
    assertEquals(c1.length, 1);
    assertEquals(c1[0].userIds, [BOB]);
    assert(c2[0].versionstamp > c1[0].versionstamp);
    assertEquals(await inbox(kv, BOB, "B1"), [1, 2]);
    assertEquals(await inbox(kv, BOB, "B2"), [1]);
  } finally {
    kv.close();
  }
});

Deno.test("the same transaction ID delivers once; another sender device's is separate", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const deliveries = [{ userId: BOB, deviceId: "B1", event: event(7) }];
    assertEquals((await send(store, "same", deliveries)).length, 1);
    assertEquals((await send(store, "same", deliveries)).length, 0);
    assertEquals(await store.transactionProgress(txn("same")), { done: true });
    await store.deliver(txn("same", "OTHERDEV"), deliveries, () => {});
    assertEquals(await inbox(kv, BOB, "B1"), [7, 7]);
    assertEquals(await store.transactionProgress(txn("never")), null);
  } finally {
    kv.close();
  }
});

/** 1,500 devices: more mutations than one commit takes. */
function manyDevices(count: number, bytes = 0): ToDeviceDelivery[] {
  const pad = "x".repeat(bytes);
  const out: ToDeviceDelivery[] = [];
  for (let i = 0; i < count; i++) {
    const body = encoder.encode(
      JSON.stringify({ type: "m.test", sender: ALICE, content: { n: i, pad } }),
    );
    out.push({ userId: BOB, deviceId: `D${String(i).padStart(5, "0")}`, event: body });
  }
  return out.sort(compareRecipients);
}

async function inboxSizes(kv: Deno.Kv, deliveries: ToDeviceDelivery[]): Promise<number[]> {
  const sizes: number[] = [];
  for (const d of deliveries) {
    let n = 0;
    const prefix = e2eeKeys.toDeviceInboxPrefix(d.userId, d.deviceId);
    for await (const _ of kv.list({ prefix })) n++;
    sizes.push(n);
  }
  return sizes;
}

Deno.test("a request over KV's commit limits resumes after a crash without duplicates", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const deliveries = manyDevices(1500);
    // Crash right after the first commit (the callback runs once it completed).
    let commits = 0;
    try {
      await store.deliver(txn("big"), deliveries, () => {
        commits++;
        throw new Error("crash");
      });
    } catch (error) {
      assertEquals((error as Error).message, "crash");
    }
    assertEquals(commits, 1);
    const progress = await store.transactionProgress(txn("big"));
    assert(progress && !progress.done, "partial progress is recorded");
    const firstPart = (await inboxSizes(kv, deliveries)).filter((n) => n === 1).length;
    assert(firstPart > 0 && firstPart < 1500, `first commit wrote ${firstPart}`);
    // The retry finishes the rest.
    const resumed = await send(store, "big", deliveries);
    assert(resumed.length >= 1);
    assertEquals(await inboxSizes(kv, deliveries), deliveries.map(() => 1));
    assertEquals(await store.transactionProgress(txn("big")), { done: true });
  } finally {
    kv.close();
  }
});

Deno.test("large messages split by bytes; two concurrent attempts deliver each once", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    // 40 messages of ~60 KB: ~2.4 MB, over the 800 KiB a commit takes.
    const deliveries = manyDevices(40, 60_000);
    const [a, b] = await Promise.all([
      send(store, "race", deliveries),
      send(store, "race", deliveries),
    ]);
    assert(a.length + b.length >= 3, `${a.length + b.length} commits`);
    assertEquals(await inboxSizes(kv, deliveries), deliveries.map(() => 1));
  } finally {
    kv.close();
  }
});

/**
 * A request's EDUs for another server as the federation sender makes them: outbox writes whose
 * keys differ on every call (the queueing time and a random tail), as on every retry.
 */
function remoteWrites(outbox: KvOutboxStore, count: number, bytes: number) {
  const pad = "z".repeat(bytes);
  return Array.from({ length: count }, (_, i) =>
    outbox.mutations([{
      destination: "remote.test",
      order: [Date.now(), "", `${i}.${crypto.randomUUID()}`],
      payload: { kind: "edu", edu_type: "m.direct_to_device", content: { part: i, pad } },
    }]));
}

async function outboxEntries(kv: Deno.Kv): Promise<number[]> {
  const parts: number[] = [];
  const prefix = outboxKeys.entryPrefix("federation", "remote.test");
  for await (const entry of kv.list<{ content: { part: number } }>({ prefix })) {
    parts.push(entry.value.content.part);
  }
  return parts.sort((a, b) => a - b);
}

Deno.test("a request's EDUs for other servers are queued once across a crash and a race", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const outbox = new KvOutboxStore(kv, "federation");
    const deliveries = manyDevices(1500);
    // Crash after the first commit (EDUs and the first local deliveries), then retry with
    // freshly made EDU writes: each EDU is queued exactly once.
    try {
      await store.deliver(txn("crash"), deliveries, () => {
        throw new Error("crash");
      }, remoteWrites(outbox, 3, 100));
    } catch (error) {
      assertEquals((error as Error).message, "crash");
    }
    assertEquals(await outboxEntries(kv), [0, 1, 2]);
    const progress = await store.transactionProgress(txn("crash"));
    assert(progress && !progress.done && progress.remote === 3);
    await store.deliver(txn("crash"), deliveries, () => {}, remoteWrites(outbox, 3, 100));
    assertEquals(await outboxEntries(kv), [0, 1, 2]);
    assertEquals(await inboxSizes(kv, deliveries), deliveries.map(() => 1));
    // A repeat after done queues nothing.
    await store.deliver(txn("crash"), deliveries, () => {}, remoteWrites(outbox, 3, 100));
    assertEquals(await outboxEntries(kv), [0, 1, 2]);

    // 30 EDUs of ~60 KB take several commits; two concurrent attempts queue each once.
    const kv2 = await Deno.openKv(":memory:");
    try {
      const store2 = new KvToDeviceStore(kv2);
      const outbox2 = new KvOutboxStore(kv2, "federation");
      const few = manyDevices(5);
      const commits: string[] = [];
      await Promise.all(
        [1, 2].map(() =>
          store2.deliver(
            txn("race"),
            few,
            (v) => commits.push(v),
            remoteWrites(outbox2, 30, 60_000),
          )
        ),
      );
      assertEquals(await outboxEntries(kv2), Array.from({ length: 30 }, (_, i) => i));
      assertEquals(await inboxSizes(kv2, few), few.map(() => 1));
      assertEquals(await store2.transactionProgress(txn("race")), { done: true });
    } finally {
      kv2.close();
    }
  } finally {
    kv.close();
  }
});

Deno.test("another server's message ID delivers once per origin", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const remote = { origin: "remote.test", messageId: "m1" };
    const deliveries = manyDevices(3);
    await store.deliver(remote, deliveries, () => {});
    await store.deliver(remote, deliveries, () => {});
    assertEquals(await inboxSizes(kv, deliveries), [1, 1, 1]);
    assertEquals(await store.transactionProgress(remote), { done: true });
    // The same message ID from another origin is another message.
    await store.deliver({ origin: "other.test", messageId: "m1" }, deliveries, () => {});
    assertEquals(await inboxSizes(kv, deliveries), [2, 2, 2]);
  } finally {
    kv.close();
  }
});

Deno.test("resuming skips recipients up to the recorded one even if the device set changed", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const deliveries = manyDevices(1200);
    try {
      await store.deliver(txn("t"), deliveries, () => {
        throw new Error("crash");
      });
    } catch { /* the crash */ }
    const progress = await store.transactionProgress(txn("t"));
    assert(progress && !progress.done);
    // On retry `*` resolves again: a device that sorts before the cursor is new and is left
    // out (the original attempt did not know it); everything after is delivered once.
    const early = { userId: BOB, deviceId: "D00000a", event: event(-1) };
    await send(store, "t", [...deliveries, early].sort(compareRecipients));
    assertEquals(await inbox(kv, BOB, "D00000a"), []);
    assertEquals(await inboxSizes(kv, deliveries), deliveries.map(() => 1));
  } finally {
    kv.close();
  }
});

Deno.test("an empty request is recorded as done", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    assertEquals(await send(store, "none", []), []);
    assertEquals(await store.transactionProgress(txn("none")), { done: true });
  } finally {
    kv.close();
  }
});

async function fill(store: KvToDeviceStore, deviceId: string, from: number, to: number) {
  for (let n = from; n <= to; n++) {
    await send(store, `fill-${deviceId}-${n}`, [{ userId: BOB, deviceId, event: event(n) }]);
  }
}

Deno.test("sync: only the next token acknowledges; a retried request gets the same messages", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 3);
    const first = await syncOnce(store, kv, "B1", undefined);
    assertEquals(numbers(first.events), [1, 2, 3]);
    // The response was lost: the client retries without a since (a full sync).
    const retried = await syncOnce(store, kv, "B1", undefined);
    assertEquals(numbers(retried.events), [1, 2, 3]);
    await fill(store, "B1", 4, 4);
    // It syncs with the retried response's token: 1-3 are acknowledged, 4 comes.
    const second = await syncOnce(store, kv, "B1", retried.next);
    assertEquals(numbers(second.events), [4]);
    // That response is lost too; a retry with the old token gets 4 again, not nothing.
    const again = await syncOnce(store, kv, "B1", retried.next);
    assertEquals(numbers(again.events), [4]);
    // The stale token from the first response acknowledges nothing.
    const stale = await syncOnce(store, kv, "B1", first.next);
    assertEquals(numbers(stale.events), [4]);
    const done = await syncOnce(store, kv, "B1", stale.next);
    assertEquals(done.events, []);
    assertEquals(await inbox(kv, BOB, "B1"), []);
    // The acknowledging sync handed out nothing and dropped the record with the messages.
    assertEquals((await kv.get(e2eeKeys.toDeviceDelivery(BOB, "B1"))).value, null);
  } finally {
    kv.close();
  }
});

Deno.test("sync: messages committed after the response's token wait for the next one", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 1);
    const upTo = await barrier(kv);
    await fill(store, "B1", 2, 2);
    const events = await store.takeForSync({ userId: BOB, deviceId: "B1", upTo, limit: 100 });
    assertEquals(numbers(events), [1]);
    const next = await syncOnce(store, kv, "B1", upTo);
    assertEquals(numbers(next.events), [2]);
  } finally {
    kv.close();
  }
});

Deno.test("sync: 250 messages come 100 at a time, in order, exactly once; devices are separate", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 250);
    await fill(store, "B2", 1000, 1001);
    const seen: number[] = [];
    let since: string | undefined;
    const sizes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await syncOnce(store, kv, "B1", since);
      sizes.push(r.events.length);
      seen.push(...numbers(r.events));
      since = r.next;
    }
    assertEquals(sizes, [100, 100, 50, 0]);
    assertEquals(seen, Array.from({ length: 250 }, (_, i) => i + 1));
    // B1's syncs neither delivered nor acknowledged B2's messages.
    assertEquals(numbers((await syncOnce(store, kv, "B2", undefined)).events), [1000, 1001]);
  } finally {
    kv.close();
  }
});

Deno.test("sync: a lost response in the middle of the cap is redelivered, nothing skipped", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 250);
    const a = await syncOnce(store, kv, "B1", undefined); // 1-100
    const b = await syncOnce(store, kv, "B1", a.next); // 101-200, lost
    assertEquals(numbers(b.events)[0], 101);
    const b2 = await syncOnce(store, kv, "B1", a.next); // retry: 101-200 again
    assertEquals(numbers(b2.events), numbers(b.events));
    const c = await syncOnce(store, kv, "B1", b2.next);
    assertEquals(numbers(c.events), Array.from({ length: 50 }, (_, i) => i + 201));
  } finally {
    kv.close();
  }
});

Deno.test("sync: closing and reopening a file-backed KV between syncs loses and repeats nothing", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/kv.sqlite3`;
  try {
    let kv = await Deno.openKv(path);
    await fill(new KvToDeviceStore(kv), "B1", 1, 150);
    const seen: number[] = [];
    let since: string | undefined;
    for (let i = 0; i < 3; i++) {
      const r = await syncOnce(new KvToDeviceStore(kv), kv, "B1", since);
      seen.push(...numbers(r.events));
      since = r.next;
      kv.close();
      kv = await Deno.openKv(path);
      if (i === 0) await fill(new KvToDeviceStore(kv), "B1", 151, 160);
    }
    assertEquals(seen, Array.from({ length: 160 }, (_, i) => i + 1));
    assertEquals(await inbox(kv, BOB, "B1"), []);
    kv.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("concurrent syncs of one device hand out whole runs and lose nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 30);
    const a = await syncOnce(store, kv, "B1", undefined, 10); // 1-10
    // Two syncs at once: one acknowledges 1-10, the other (a retry) does not. The retry may
    // commit first, replacing the record; then the acknowledging one sees a token it does not
    // know and hands 1-10 out again: a repeat for a client running two sync loops, not a loss.
    const [acking, retry] = await Promise.all([
      syncOnce(store, kv, "B1", a.next, 10),
      syncOnce(store, kv, "B1", undefined, 10),
    ]);
    const runs = [numbers(acking.events), numbers(retry.events)];
    for (const run of runs) {
      const first = run[0];
      assert(first === 1 || first === 11, JSON.stringify(runs));
      assertEquals(run, Array.from({ length: 10 }, (_, i) => i + first));
    }
    // Whichever response the client goes on from, everything after it arrives in order.
    const seen = [...numbers(acking.events)];
    let since = acking.next;
    for (;;) {
      const r = await syncOnce(store, kv, "B1", since, 10);
      if (r.events.length === 0) break;
      seen.push(...numbers(r.events));
      since = r.next;
    }
    const from = seen[0];
    assertEquals(seen, Array.from({ length: 31 - from }, (_, i) => i + from));
  } finally {
    kv.close();
  }
});

Deno.test("a second sync loop's hand-out does not make the first loop's token unknown", async () => {
  // The order the concurrent test above hits now and then under load, made deterministic: the
  // acknowledging sync commits first, then a retry from no token hands the same run out again.
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 30);
    const a = await syncOnce(store, kv, "B1", undefined, 10); // 1-10
    const acking = await syncOnce(store, kv, "B1", a.next, 10); // acknowledges 1-10: 11-20
    const retry = await syncOnce(store, kv, "B1", undefined, 10); // 11-20 again
    assertEquals(numbers(acking.events), numbers(retry.events));
    // Going on from either response acknowledges what it carried: 21-30 next, nothing twice.
    for (const from of [acking, retry]) {
      const next = await syncOnce(store, kv, "B1", from.next, 10);
      assertEquals(numbers(next.events), Array.from({ length: 10 }, (_, i) => i + 21));
    }
  } finally {
    kv.close();
  }
});

Deno.test("removing a device deletes its inbox, delivery record and transaction IDs", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    await fill(store, "B1", 1, 700);
    await fill(store, "B2", 1, 1);
    await syncOnce(store, kv, "B1", undefined);
    await store.deliver({ sender: BOB, senderDeviceId: "B1", txnId: "mine" }, [
      { userId: ALICE, deviceId: "A1", event: event(1, BOB) },
    ], () => {});
    await store.removeDevice(BOB, "B1");
    await store.removeDevice(BOB, "B1"); // idempotent
    assertEquals(await inbox(kv, BOB, "B1"), []);
    assertEquals((await kv.get(e2eeKeys.toDeviceDelivery(BOB, "B1"))).value, null);
    const txns = [];
    for await (const e of kv.list({ prefix: e2eeKeys.toDeviceTxnPrefix(BOB, "B1") })) txns.push(e);
    assertEquals(txns, []);
    assertEquals(await inbox(kv, BOB, "B2"), [1]);
    assertEquals(await inbox(kv, ALICE, "A1"), [1]);
  } finally {
    kv.close();
  }
});

Deno.test("concurrent writers and a capped reader: every message once, each writer's in order", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const WRITERS = 4;
    const PER_WRITER = 80;
    let writing = true;
    const writes = Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let n = 0; n < PER_WRITER; n++) {
        await store.deliver(
          { sender: ALICE, senderDeviceId: `W${w}`, txnId: `n${n}` },
          [{ userId: BOB, deviceId: "B1", event: event(w * 1000 + n) }],
          () => {},
        );
      }
    })).finally(() => writing = false);
    // A cap of 7 keeps the reader behind the writers, so acknowledgements and hand-outs
    // interleave with commits all the way.
    const seen: number[] = [];
    let since: string | undefined;
    for (;;) {
      const allWritten = !writing;
      const r = await syncOnce(store, kv, "B1", since, 7);
      seen.push(...numbers(r.events));
      since = r.next;
      if (allWritten && r.events.length === 0) break;
    }
    await writes;
    assertEquals(seen.length, WRITERS * PER_WRITER);
    for (let w = 0; w < WRITERS; w++) {
      const mine = seen.filter((n) => Math.floor(n / 1000) === w);
      assertEquals(mine, Array.from({ length: PER_WRITER }, (_, n) => w * 1000 + n));
    }
  } finally {
    kv.close();
  }
});
