import assert from "node:assert/strict";
import type { WakeSource, WakeTopic } from "../../domain/ports/wake_source.ts";
import { addWakes, type WakeTargets } from "../../kv/wake_keys.ts";
import {
  LocalWakeSource,
  openWakeSource,
  PollWakeSource,
  WatchWakeSource,
} from "../../kv/wake_sources.ts";

/** Bump wake keys in a commit of their own; its versionstamp. */
async function bump(kv: Deno.Kv, targets: WakeTargets): Promise<string> {
  const result = await addWakes(kv.atomic(), targets).commit();
  assert.ok(result.ok);
  return result.versionstamp;
}

/** Versionstamps an `onWake` was called with, and a way to await the next one. */
function recorder() {
  const seen: string[] = [];
  let waiting: ((versionstamp: string) => void) | undefined;
  return {
    seen,
    onWake: (versionstamp: string) => {
      seen.push(versionstamp);
      waiting?.(versionstamp);
    },
    /** The `n`th wake (0: the first), now or when it comes; fails after a long guard. */
    wake(n = 0): Promise<string> {
      if (seen.length > n) return Promise.resolve(seen[n]);
      return new Promise((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error("no wake within 30 s")), 30_000);
        waiting = () => {
          if (seen.length <= n) return;
          clearTimeout(guard);
          resolve(seen[n]);
        };
      });
    },
  };
}

const room = (roomId: string): WakeTopic => ({ kind: "room", roomId });
const user = (userId: string): WakeTopic => ({ kind: "user", userId });

/**
 * The live adapters under one contract. The poll adapter gets a long interval and `settle`
 * runs a tick by hand, so nothing depends on timing; the watch adapter's streams deliver on
 * their own, so its `settle` waits for a witness subscribed to the same keys.
 */
const adapters: {
  name: string;
  open(kv: Deno.Kv): WakeSource;
  /** Let the source see the commits made so far (poll: one tick). */
  settle(source: WakeSource): Promise<void>;
}[] = [
  {
    name: "poll",
    open: (kv) => new PollWakeSource(kv, 60_000),
    settle: (source) => (source as PollWakeSource).tick(),
  },
  {
    name: "watch",
    open: (kv) => new WatchWakeSource(kv),
    settle: () => Promise.resolve(),
  },
];

for (const adapter of adapters) {
  Deno.test(`${adapter.name} wake source: fires on a bump past after, not for one before it`, async () => {
    const kv = await Deno.openKv(":memory:");
    const source = adapter.open(kv);
    try {
      const before = await bump(kv, { roomIds: ["!a:x"] });
      const woken = recorder();
      const off = source.watchAfter([room("!a:x"), user("@u:x")], before, woken.onWake);
      // A witness after nothing: it sees the same bump, so when it fires the subscription
      // above has had its look at the keys as they were.
      const witness = recorder();
      const offWitness = source.watchAfter([room("!a:x")], "", witness.onWake);
      await adapter.settle(source);
      assert.equal(await witness.wake(), before);
      assert.deepEqual(woken.seen, [], "a bump at `after` is not news");

      const later = await bump(kv, { userIds: ["@u:x"] });
      await adapter.settle(source);
      assert.equal(await woken.wake(), later);
      assert.deepEqual(woken.seen, [later]);
      off();
      offWitness();
    } finally {
      source.close();
      kv.close();
    }
  });

  Deno.test(`${adapter.name} wake source: at once when a key is already past after`, async () => {
    const kv = await Deno.openKv(":memory:");
    const source = adapter.open(kv);
    try {
      const old = await bump(kv, { roomIds: ["!b:x"] });
      const past = await bump(kv, { roomIds: ["!a:x"] });
      const woken = recorder();
      // No tick: the subscription's own first look reports it.
      const off = source.watchAfter([room("!a:x"), room("!b:x")], old, woken.onWake);
      assert.equal(await woken.wake(), past);
      off();
    } finally {
      source.close();
      kv.close();
    }
  });

  Deno.test(`${adapter.name} wake source: unsubscribe stops the wakes`, async () => {
    const kv = await Deno.openKv(":memory:");
    const source = adapter.open(kv);
    try {
      const start = await bump(kv, { roomIds: ["!a:x"] });
      const stopped = recorder();
      const off = source.watchAfter([room("!a:x")], start, stopped.onWake);
      const witness = recorder();
      const offWitness = source.watchAfter([room("!a:x")], start, witness.onWake);
      off();
      const later = await bump(kv, { roomIds: ["!a:x"] });
      await adapter.settle(source);
      assert.equal(await witness.wake(), later);
      assert.deepEqual(stopped.seen, []);
      offWitness();
      if (source instanceof PollWakeSource) assert.equal(source.keyCount, 0);
    } finally {
      source.close();
      kv.close();
    }
  });

  Deno.test(`${adapter.name} wake source: more than 10 keys are watched in groups`, async () => {
    const kv = await Deno.openKv(":memory:");
    const source = adapter.open(kv);
    try {
      const start = await bump(kv, { roomIds: ["!r0:x"] });
      const topics = Array.from({ length: 25 }, (_, i) => room(`!r${i}:x`));
      const woken = recorder();
      // Duplicates count once.
      const off = source.watchAfter([...topics, room("!r3:x")], start, woken.onWake);
      if (source instanceof PollWakeSource) assert.equal(source.keyCount, 25);
      for (const i of [24, 13, 7]) {
        const count = woken.seen.length;
        const versionstamp = await bump(kv, { roomIds: [`!r${i}:x`] });
        await adapter.settle(source);
        assert.equal(await woken.wake(count), versionstamp, `key ${i}`);
      }
      off();
    } finally {
      source.close();
      kv.close();
    }
  });

  Deno.test(`${adapter.name} wake source: watchFromNow reports only later bumps`, async () => {
    const kv = await Deno.openKv(":memory:");
    const source = adapter.open(kv);
    try {
      const before = await bump(kv, { outboxStreams: ["federation"] });
      const woken = recorder();
      const off = await source.watchFromNow(
        [{ kind: "outbox", stream: "federation" }, { kind: "outbox", stream: "push" }],
        woken.onWake,
      );
      const witness = recorder();
      const offWitness = source.watchAfter(
        [{ kind: "outbox", stream: "federation" }],
        "",
        witness.onWake,
      );
      await adapter.settle(source);
      assert.equal(await witness.wake(), before);
      assert.deepEqual(woken.seen, []);
      const later = await bump(kv, { outboxStreams: ["push"] });
      await adapter.settle(source);
      assert.equal(await woken.wake(), later);
      off();
      offWitness();
    } finally {
      source.close();
      kv.close();
    }
  });
}

Deno.test("poll wake source: its timer runs only while something is subscribed", async () => {
  const kv = await Deno.openKv(":memory:");
  const source = new PollWakeSource(kv, 10);
  try {
    assert.equal(source.polling, false);
    const start = await bump(kv, { userIds: ["@u:x"] });
    const woken = recorder();
    const off = source.watchAfter([user("@u:x")], start, woken.onWake);
    const other = source.watchAfter([user("@v:x")], start, () => {});
    assert.equal(source.polling, true);
    // Driven by the timer alone this time (no tick by hand).
    const later = await bump(kv, { userIds: ["@u:x"] });
    assert.equal(await woken.wake(), later);
    off();
    assert.equal(source.polling, true, "one subscriber is left");
    other();
    assert.equal(source.polling, false);
    assert.equal(source.keyCount, 0);
    // A new subscriber starts it again; close stops it.
    source.watchAfter([user("@u:x")], later, () => {});
    assert.equal(source.polling, true);
    source.close();
    assert.equal(source.polling, false);
    assert.equal(source.keyCount, 0);
  } finally {
    source.close();
    kv.close();
  }
});

Deno.test("wake sources: closed sources take no subscriptions; local never wakes", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    // A bump every subscription below would report at once, were it live.
    await bump(kv, { roomIds: ["!a:x"] });
    for (const mode of ["watch", "poll", "local"] as const) {
      const source = openWakeSource(kv, mode, 60_000);
      assert.equal(source.mode, mode);
      if (mode !== "local") source.close();
      const woken = recorder();
      const off = source.watchAfter([room("!a:x")], "", woken.onWake);
      off();
      (await source.watchFromNow([room("!a:x")], woken.onWake))();
      if (source instanceof PollWakeSource) assert.equal(source.polling, false);
      assert.deepEqual(woken.seen, []);
      source.close();
    }
    assert.ok(openWakeSource(kv, "local", 100) instanceof LocalWakeSource);
  } finally {
    kv.close();
  }
});

Deno.test("watch wake source: a watch that fails or ends is opened again and reports the bump it missed", async () => {
  const kv = await Deno.openKv(":memory:");
  let opened = 0;
  // The first watch fails (a lost connection to KV), the second ends; later ones are real.
  const flaky = new Proxy(kv, {
    get(target, prop) {
      if (prop === "watch") {
        return (keys: Deno.KvKey[]) => {
          opened++;
          if (opened === 1) {
            return new ReadableStream({ start: (c) => c.error(new Error("connection lost")) });
          }
          if (opened === 2) return new ReadableStream({ start: (c) => c.close() });
          return target.watch(keys);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const source = new WatchWakeSource(flaky);
  const error = console.error;
  console.error = () => {};
  try {
    const after = await bump(kv, { roomIds: ["!a"] });
    const woken = recorder();
    const unsubscribe = source.watchAfter([room("!a")], after, woken.onWake);
    const versionstamp = await bump(kv, { roomIds: ["!a"] });
    assert.equal(await woken.wake(), versionstamp);
    assert.ok(opened >= 3);
    unsubscribe();
    assert.equal(source.subscriptionCount, 0);
  } finally {
    console.error = error;
    source.close();
    kv.close();
  }
});

Deno.test("watch wake source: a subscription left open when its database closes just ends", async () => {
  const kv = await Deno.openKv(":memory:");
  const source = new WatchWakeSource(kv);
  const woken = recorder();
  source.watchAfter([room("!a")], "", woken.onWake);
  const error = console.error;
  let logged = 0;
  console.error = () => logged++;
  try {
    kv.close();
    // Its streams end; opening them again fails at once: no retry timer outlives the test.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(logged, 0);
  } finally {
    console.error = error;
    source.close();
  }
});
