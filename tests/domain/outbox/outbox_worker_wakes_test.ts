/**
 * The outbox sender without a fixed poll: appends another process commits reach it through the
 * stream's wake key (bumped in the append's own commit), and a timer is set only for the next
 * time KV says a destination comes due (a retry after backoff, a dead process's lease running
 * out). Two store objects over one KV handle stand for two processes; the wake source is the
 * poll adapter local fleets use (TESSERA_WAKE=poll) or the one-process `local` one, which never
 * fires, so only the worker's own timer can explain a delivery.
 */
import { assert, assertEquals } from "../../assert.ts";
import { KvOutboxStore } from "../../../kv/outbox_store.ts";
import { LocalWakeSource, PollWakeSource } from "../../../kv/wake_sources.ts";
import { OutboxWorker } from "../../../domain/outbox/outbox_worker.ts";
import type { OutboxEntry } from "../../../domain/ports/outbox_store.ts";
import type { WakeSource } from "../../../domain/ports/wake_source.ts";
import { outboxKeys, wakeKeys } from "../../../kv/schema.ts";

/** Resolves when `count` entries were delivered; fails the test if that never happens. */
function deliveries() {
  const delivered: number[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const deliver = (_destination: string, entries: OutboxEntry[]) => {
    for (const e of entries) delivered.push(e.payload.n as number);
    for (const w of waiters) if (delivered.length >= w.count) w.resolve();
    return Promise.resolve({ done: entries.length });
  };
  const until = (count: number, what: string) => {
    let guard: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      new Promise<void>((resolve) => {
        waiters.push({ count, resolve });
        if (delivered.length >= count) resolve();
      }),
      new Promise<never>((_, reject) => {
        // A guard against a hang, not a measurement: a missed wake never delivers at all.
        guard = setTimeout(() => reject(new Error(`never delivered: ${what}`)), 20_000);
      }),
    ]).finally(() => clearTimeout(guard));
  };
  return { delivered, deliver, until };
}

function worker(
  store: KvOutboxStore,
  deliver: (d: string, e: OutboxEntry[]) => Promise<{ done: number; failed?: boolean }>,
  source: WakeSource,
  extra: { backoffBaseMs?: number } = {},
) {
  return new OutboxWorker({
    store,
    deliver,
    holder: "a",
    wakes: { source, topic: { kind: "outbox", stream: "test" } },
    ...extra,
  });
}

Deno.test("outbox wakes: an append in another process's commit bumps the stream's wake key in that commit", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvOutboxStore(kv, "test");
    await store.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    const marker = await kv.get(outboxKeys.pending("test", "d"));
    const wake = await kv.get(wakeKeys.outbox("test"));
    assert(wake.versionstamp !== null);
    assertEquals(wake.versionstamp, marker.versionstamp);
    // Nothing to queue, nothing written (no wake either).
    assertEquals(store.mutations([]), []);
  } finally {
    kv.close();
  }
});

Deno.test("outbox wakes: entries another process appends are sent on the wake, with no poll", async () => {
  const kv = await Deno.openKv(":memory:");
  const source = new PollWakeSource(kv, 20);
  const mine = new KvOutboxStore(kv, "test");
  const theirs = new KvOutboxStore(kv, "test");
  const { delivered, deliver, until } = deliveries();
  const sender = worker(mine, deliver, source);
  try {
    await theirs.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    sender.start();
    await until(1, "the entry queued before the start");
    // Nothing in this process calls wake(): only the wake key can start the next pass.
    await theirs.append([{ destination: "e", order: [2], payload: { n: 2 } }]);
    await until(2, "an entry queued by another process");
    await theirs.append([{ destination: "d", order: [3], payload: { n: 3 } }]);
    await until(3, "a second one");
    assertEquals(delivered, [1, 2, 3]);
    await sender.stop();
    // The subscription went with the stop: the poll adapter's timer stops too.
    assertEquals(source.polling, false);
  } finally {
    await sender.stop();
    source.close();
    kv.close();
  }
});

Deno.test("outbox wakes: a backed-off destination is retried when its retry comes due, woken by nothing else", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvOutboxStore(kv, "test");
  const ok = deliveries();
  let attempts = 0;
  const sender = worker(
    store,
    (destination, entries) => {
      attempts++;
      return attempts === 1
        ? Promise.resolve({ done: 0, failed: true })
        : ok.deliver(destination, entries);
    },
    new LocalWakeSource(),
    { backoffBaseMs: 50 },
  );
  try {
    await store.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    sender.start();
    await ok.until(1, "the retry after the backoff");
    assertEquals(attempts, 2);
    assertEquals(ok.delivered, [1]);
  } finally {
    await sender.stop();
    kv.close();
  }
});

Deno.test("outbox wakes: a destination leased by a dead process is taken over when the lease runs out", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvOutboxStore(kv, "test");
  const { delivered, deliver, until } = deliveries();
  const sender = worker(store, deliver, new LocalWakeSource());
  try {
    await store.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    const now = Date.now();
    assert(await store.lease("d", "dead", now, now + 100));
    assertEquals(await store.nextDue(now), now + 100);
    sender.start();
    await until(1, "the entry under the dead lease");
    assertEquals(delivered, [1]);
    // Given back once the drain ends (stop waits for it): nothing left to come due.
    await sender.stop();
    assertEquals(await store.nextDue(Date.now()), null);
  } finally {
    await sender.stop();
    kv.close();
  }
});

Deno.test("outbox wakes: a pass that failed (KV unreachable) is tried again without waiting for a wake", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvOutboxStore(kv, "test");
  let failures = 0;
  const flaky = new class extends KvOutboxStore {
    override pending(limit: number, after?: string) {
      if (failures++ === 0) return Promise.reject(new Error("KV unreachable"));
      return super.pending(limit, after);
    }
  }(kv, "test");
  const { delivered, deliver, until } = deliveries();
  const sender = new OutboxWorker({
    store: flaky,
    deliver,
    pollMs: 20,
    wakes: { source: new LocalWakeSource(), topic: { kind: "outbox", stream: "test" } },
  });
  const error = console.error;
  console.error = () => {};
  try {
    await store.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    sender.start();
    await until(1, "the entry after the failed pass");
    assertEquals(delivered, [1]);
    assert(failures >= 2);
  } finally {
    console.error = error;
    await sender.stop();
    kv.close();
  }
});

Deno.test("outbox wakes: a backlog a drain leaves at half its lease is sent on, woken by nothing else", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvOutboxStore(kv, "test");
  const { delivered, deliver, until } = deliveries();
  // Each delivery takes (on the worker's clock) more than half the lease, so every drain stops
  // after one batch with the rest still queued; no append and no wake follows.
  let clock = Date.now();
  const sender = new OutboxWorker({
    store,
    deliver: (destination, entries) => {
      clock += 70_000;
      return deliver(destination, entries);
    },
    now: () => clock,
    batchSize: 1,
    leaseMs: 120_000,
    wakes: { source: new LocalWakeSource(), topic: { kind: "outbox", stream: "test" } },
  });
  try {
    await store.append([1, 2, 3].map((n) => ({ destination: "d", order: [n], payload: { n } })));
    sender.start();
    await until(3, "the entries left after the first drain's time ran out");
    assertEquals(delivered, [1, 2, 3]);
  } finally {
    await sender.stop();
    kv.close();
  }
});
