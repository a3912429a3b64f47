import { assert, assertEquals } from "../assert.ts";
import { KvOutboxStore } from "../../kv/outbox_store.ts";
import { OutboxWorker } from "../../domain/outbox/outbox_worker.ts";
import type { OutboxEntry } from "../../domain/ports/outbox_store.ts";

// Two senders with their own holder names and store objects over one KV stand for two
// isolates: everything they share goes through KV (leases, markers, entries).
Deno.test("outbox: two senders deliver each entry once, in order", async () => {
  const kvA = await Deno.openKv(":memory:");
  const kvB = kvA;
  try {
    const storeA = new KvOutboxStore(kvA, "test");
    const storeB = new KvOutboxStore(kvB, "test");
    const delivered = new Map<string, number[]>();
    const deliver = async (destination: string, entries: OutboxEntry[]) => {
      // Yield so the two senders' passes interleave.
      await new Promise((r) => setTimeout(r, 1));
      const list = delivered.get(destination) ?? [];
      for (const e of entries) list.push(e.payload.n as number);
      delivered.set(destination, list);
      return { done: entries.length };
    };
    const a = new OutboxWorker({ store: storeA, deliver, holder: "a", batchSize: 3 });
    const b = new OutboxWorker({ store: storeB, deliver, holder: "b", batchSize: 3 });
    const destinations = ["d1", "d2", "d3", "d4"];
    for (let round = 0; round < 3; round++) {
      const appends = destinations.flatMap((destination) =>
        Array.from({ length: 5 }, (_, i) => ({
          destination,
          order: [round * 10 + i],
          payload: { n: round * 10 + i },
        }))
      );
      // Half appended through each store, as two isolates would.
      await storeA.append(appends.filter((_, i) => i % 2 === 0));
      await storeB.append(appends.filter((_, i) => i % 2 === 1));
      await Promise.all([a.runOnce(), b.runOnce(), a.runOnce(), b.runOnce()]);
      // Whatever a pass skipped (a destination leased by the other) the next pass sends.
      await Promise.all([a.runOnce(), b.runOnce()]);
    }
    const expected = [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24];
    for (const d of destinations) assertEquals(delivered.get(d), expected, d);
    assertEquals(await storeA.pending(10), []);
  } finally {
    kvA.close();
  }
});

Deno.test("outbox: a held lease keeps other senders out until it expires", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvOutboxStore(kv, "test");
    let now = 1_000_000;
    await store.append([{ destination: "d", order: [1], payload: { n: 1 } }]);
    // A sender that took the lease and died.
    assert(await store.lease("d", "dead", now, now + 60_000));
    const sent: number[] = [];
    const worker = new OutboxWorker({
      store,
      holder: "live",
      now: () => now,
      deliver: (_d, entries) => {
        sent.push(...entries.map((e) => e.payload.n as number));
        return Promise.resolve({ done: entries.length });
      },
    });
    await worker.runOnce();
    assertEquals(sent, []);
    now += 60_001;
    await worker.runOnce();
    assertEquals(sent, [1]);
    assertEquals(await store.pending(10), []);
  } finally {
    kv.close();
  }
});

Deno.test("outbox: failures back off, doubling; after the last one the front entry is given up", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvOutboxStore(kv, "test");
    let now = 0;
    let attempts = 0;
    const worker = new OutboxWorker({
      store,
      now: () => now,
      backoffBaseMs: 1_000,
      maxFailures: 3,
      deliver: (_d, entries) => {
        attempts++;
        // The first entry never goes through; the second does.
        return Promise.resolve(
          entries[0].payload.n === 1 ? { done: 0, failed: true } : { done: entries.length },
        );
      },
    });
    await store.append([
      { destination: "d", order: [1], payload: { n: 1 } },
      { destination: "d", order: [2], payload: { n: 2 } },
    ]);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const before = attempts;
      await worker.runOnce();
      assertEquals(attempts, before + 1);
      // No attempt before the backoff has passed.
      await worker.runOnce();
      assertEquals(attempts, before + 1);
      const state = await kv.get<{ retryAt: number }>(["outbox_state", "test", "d"]);
      delays.push(state.value!.retryAt - now);
      now = state.value!.retryAt;
    }
    assertEquals(delays, [1_000, 2_000, 4_000]);
    // The fourth failure gives entry 1 up; entry 2 goes out in the same pass.
    await worker.runOnce();
    assertEquals(attempts, 5);
    assertEquals((await store.peek("d", 10)).length, 0);
    assertEquals((await kv.get(["outbox_state", "test", "d"])).value, null);
  } finally {
    kv.close();
  }
});

Deno.test("outbox: resetRetry clears a backoff, and one cleared under a running lease wins at release", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvOutboxStore(kv, "test");
    const now = 1_000_000;
    assertEquals(await store.resetRetry("d"), false);
    // Backed off: no lease until the retry time, unless the backoff is cleared.
    const first = await store.lease("d", "a", now, now + 60_000);
    assert(first);
    await store.release(first, { failures: 3, retryAt: now + 30_000 });
    assertEquals(await store.lease("d", "a", now, now + 60_000), null);
    assertEquals(await store.resetRetry("d"), true);
    assertEquals(await store.resetRetry("d"), false);
    const second = await store.lease("d", "a", now, now + 60_000);
    assert(second);
    await store.release(second, { failures: 1, retryAt: now + 2_000 });
    // A lease taken with a backoff standing (its retry time came), then the backoff cleared
    // while the holder is still sending: its release (another failure, say) leaves the
    // destination free rather than backed off, and the lease is not stuck.
    const third = await store.lease("d", "b", now + 2_000, now + 62_000);
    assert(third);
    assertEquals(await store.resetRetry("d"), true);
    await store.release(third, { failures: 2, retryAt: now + 10_000 });
    assert(await store.lease("d", "c", now + 2_001, now + 62_000));
  } finally {
    kv.close();
  }
});

Deno.test("outbox: with every slot taken by slow destinations, the rest go once one frees", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvOutboxStore(kv, "test");
    const destinations = ["d1", "d2", "d3", "d4", "d5"];
    await store.append(destinations.map((destination) => ({
      destination,
      order: [1],
      payload: { n: 1 },
    })));
    const delivered: string[] = [];
    let release = () => {};
    const released = new Promise<void>((resolve) => release = resolve);
    let allDone = () => {};
    const done = new Promise<void>((resolve) => allDone = resolve);
    let started = () => {};
    const twoStarted = new Promise<void>((resolve) => started = resolve);
    let inFlight = 0;
    const worker = new OutboxWorker({
      store,
      parallel: 2,
      deliver: async (destination, entries) => {
        if (++inFlight === 2) started();
        // The first two hold both slots until the test lets them go.
        if (delivered.length === 0) await released;
        inFlight--;
        delivered.push(destination);
        if (delivered.length === destinations.length) allDone();
        return { done: entries.length };
      },
    });
    worker.start();
    await twoStarted;
    assertEquals(delivered, []);
    release();
    await done;
    await worker.stop();
    assertEquals(delivered.sort(), destinations);
    // (A marker may outlive a stop; the next pass clears it.)
    for (const d of destinations) assertEquals(await store.peek(d, 10), []);
  } finally {
    kv.close();
  }
});
