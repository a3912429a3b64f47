/** Appends to different rooms never conflict, even from two connections (two processes). */
import { assertEquals } from "../assert.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { greatestIdResolver, RoomBuilder } from "./event_fixtures.ts";

/** Wrap a KV connection so every atomic commit refused by a failed check is counted. */
function countFailedChecks(kv: Deno.Kv): { kv: Deno.Kv; failed: () => number } {
  let failed = 0;
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            const result = await commit();
            if (!result.ok) failed++;
            return result;
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: wrapped, failed: () => failed };
}

Deno.test("the failed-check counter sees a refused commit", async () => {
  const counted = countFailedChecks(await Deno.openKv(":memory:"));
  await counted.kv.set(["k"], 1);
  await counted.kv.atomic().check({ key: ["k"], versionstamp: null }).set(["k"], 2).commit();
  assertEquals(counted.failed(), 1);
  counted.kv.close();
});

Deno.test("concurrent appends to different rooms over two connections never fail a check", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/rooms.kv`;
  const connections = [
    countFailedChecks(await Deno.openKv(path)),
    countFailedChecks(await Deno.openKv(path)),
  ];
  const stores = connections.map((c) => new KvEventStore(c.kv, { resolver: greatestIdResolver }));
  try {
    const rooms = Array.from({ length: 8 }, (_, i) => `!room${i}:test`);
    const perRoom = 20;
    await Promise.all(rooms.map(async (roomId, i) => {
      const store = stores[i % 2];
      const builder = new RoomBuilder(roomId);
      await store.append({ roomId, events: [builder.create(), builder.member("@a:test", "join")] });
      for (let n = 0; n < perRoom; n++) {
        await store.append({ roomId, events: [builder.message(`${roomId}/${n}`)] });
      }
    }));
    assertEquals(connections.map((c) => c.failed()), [0, 0]);
    for (const roomId of rooms) {
      const head = await stores[0].roomHead(roomId);
      assertEquals(head?.lastPosition, perRoom + 2);
    }
  } finally {
    for (const c of connections) c.kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
