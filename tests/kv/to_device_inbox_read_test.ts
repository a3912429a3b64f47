/**
 * KvToDeviceStore.readInbox, the non-acknowledging read of a dehydrated device's inbox: pages in
 * order from any position, `more` exactly when messages follow, nothing deleted, and paging
 * while writers deliver sees every message once with each writer's in order.
 */
import { assertEquals } from "../assert.ts";
import { KvToDeviceStore } from "../../kv/to_device_store.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import type { ToDeviceEvent } from "../../domain/ports/to_device_store.ts";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";

function event(n: number): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ type: "m.test", sender: ALICE, content: { n } }),
  );
}

async function deliver(store: KvToDeviceStore, writer: string, n: number) {
  await store.deliver(
    { sender: ALICE, senderDeviceId: writer, txnId: `n${n}` },
    [{ userId: BOB, deviceId: "DEHYDRATED", event: event(n) }],
    () => {},
  );
}

const numbers = (events: ToDeviceEvent[]) => events.map((e) => e.content.n as number);

Deno.test("readInbox pages in order, says when more follow, and deletes nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const empty = await store.readInbox(BOB, "DEHYDRATED", null, 5);
    assertEquals(empty, { events: [], last: null, more: false });
    for (let n = 0; n < 10; n++) await deliver(store, "W", n);
    // Another device's inbox is not read.
    await store.deliver({ sender: ALICE, senderDeviceId: "W", txnId: "other" }, [
      { userId: BOB, deviceId: "OTHER", event: event(99) },
    ], () => {});

    const first = await store.readInbox(BOB, "DEHYDRATED", null, 4);
    assertEquals([numbers(first.events), first.more], [[0, 1, 2, 3], true]);
    const second = await store.readInbox(BOB, "DEHYDRATED", first.last, 4);
    assertEquals([numbers(second.events), second.more], [[4, 5, 6, 7], true]);
    // A page ending at the last message knows it is the last.
    const third = await store.readInbox(BOB, "DEHYDRATED", second.last, 2);
    assertEquals([numbers(third.events), third.more], [[8, 9], false]);
    const after = await store.readInbox(BOB, "DEHYDRATED", third.last, 2);
    assertEquals(after, { events: [], last: null, more: false });
    // Same pages again: nothing was deleted.
    const all = await store.readInbox(BOB, "DEHYDRATED", null, 100);
    assertEquals(numbers(all.events), Array.from({ length: 10 }, (_, n) => n));
    let stored = 0;
    for await (const _ of kv.list({ prefix: e2eeKeys.toDeviceInboxPrefix(BOB, "DEHYDRATED") })) {
      stored++;
    }
    assertEquals(stored, 10);
  } finally {
    kv.close();
  }
});

Deno.test("readInbox while writers deliver: every message once, each writer's in order", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvToDeviceStore(kv);
    const WRITERS = 4;
    const PER_WRITER = 40;
    let writing = true;
    const writes = Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let n = 0; n < PER_WRITER; n++) await deliver(store, `W${w}`, w * 1000 + n);
    })).finally(() => writing = false);
    const seen: number[] = [];
    let last: string | null = null;
    for (;;) {
      const allWritten = !writing;
      const page = await store.readInbox(BOB, "DEHYDRATED", last, 7);
      seen.push(...numbers(page.events));
      last = page.last ?? last;
      if (allWritten && page.events.length === 0) break;
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
