/**
 * The KV connection store: a head larger than one value comes back whole, room records past one
 * commit's budget are all written, a save checked against a stale head writes nothing, and a
 * head past its chunk budget is refused with M_TOO_LARGE.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvSlidingConnectionStore } from "../../kv/sliding_sync_connection_store.ts";
import {
  type ConnectionHead,
  newConnection,
  type RoomEntry,
} from "../../domain/sliding_sync/connection.ts";
import { MatrixError } from "../../domain/errors.ts";

const KEY = { userId: "@alice:example.org", deviceId: "DEV", connId: "main" };

/** A head whose subscription configs take about `bytes` bytes. */
function headOf(bytes: number): ConnectionHead {
  const head = newConnection("abcdef");
  const pairs: [string, string][] = [];
  for (let i = 0; pairs.length * 1_000 < bytes; i++) {
    pairs.push(["m.room.member", `${i}`.padEnd(990, "x")]);
  }
  for (let i = 0; i * 100 < pairs.length; i++) {
    const key = `config${i}`;
    head.configs[key] = { requiredState: pairs.slice(i * 100, i * 100 + 100), timelineLimit: 1 };
    head.confirmed.subscriptions[`!room${i}:example.org`] = key;
  }
  return head;
}

function entry(i: number): RoomEntry {
  return {
    generation: "abcdef",
    depth: 1,
    values: { a1: { sentAt: `s${i}`, config: "k" } },
    prev: null,
  };
}

Deno.test("a large head and many room records round-trip", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvSlidingConnectionStore(kv);
  assertEquals(await store.loadHead(KEY), undefined);
  const head = headOf(150_000);
  const rooms = new Map(Array.from({ length: 1_500 }, (_, i) => [`!r${i}:example.org`, entry(i)]));
  assert(await store.save(KEY, head, undefined, rooms));
  const loaded = await store.loadHead(KEY);
  assertEquals(loaded?.head, head);
  const read = await store.roomEntries(KEY, [...rooms.keys(), "!never:example.org"]);
  assertEquals(read.size, 1_500);
  assertEquals(read.get("!r1499:example.org"), entry(1499));

  // A smaller head replaces it whole (no stale chunk read back).
  const small = newConnection("abcdef");
  assert(await store.save(KEY, small, loaded!.version, new Map()));
  const again = await store.loadHead(KEY);
  assertEquals(again?.head, small);
  // Checked against the version before: refused, nothing written.
  assertEquals(
    await store.save(KEY, head, loaded!.version, new Map([["!x:example.org", entry(0)]])),
    false,
  );
  assertEquals((await store.loadHead(KEY))?.head, small);
  assertEquals((await store.roomEntries(KEY, ["!x:example.org"])).size, 0);
});

Deno.test("a head past its chunk budget is refused with M_TOO_LARGE", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvSlidingConnectionStore(kv);
  let error: unknown;
  try {
    await store.save(KEY, headOf(600_000), undefined, new Map());
  } catch (e) {
    error = e;
  }
  assert(error instanceof MatrixError);
  assertEquals([error.status, error.errcode], [413, "M_TOO_LARGE"]);
  assertEquals(await store.loadHead(KEY), undefined, "nothing written");
});
