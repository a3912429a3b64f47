/**
 * Typing a dead process's timer would have cleared: the fleet's typing expiry job (`expireDue`)
 * finds the room through the expiry index written with the typing, clears what expired there,
 * and wakes the room's syncs in every process (the room's wake key, same commit).
 */
import { assert, assertEquals } from "../assert.ts";
import { TypingService } from "../../domain/ephemeral/typing_service.ts";
import { KvTypingStore } from "../../kv/typing_store.ts";
import { typingExpiryKey, typingKey, wakeKeys } from "../../kv/schema.ts";

const ROOM = "!room:here.test";

function service(kv: Deno.Kv, now: () => number, woken: string[]) {
  return new TypingService({
    store: new KvTypingStore(kv),
    events: {
      currentStateEventId: () => Promise.resolve(null),
      getEvent: () => Promise.resolve(null),
    },
    notifyRoom: (roomId) => woken.push(roomId),
    now,
  });
}

Deno.test("typing expiry job: another process clears typing whose writer died, and wakes the room", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const woken: string[] = [];
  const writer = service(kv, () => now, []);
  const sweeper = service(kv, () => now, woken);
  try {
    await writer.setRemoteTyping("@a:there.test", ROOM, true, 10_000);
    await writer.setRemoteTyping("@b:there.test", ROOM, true, 20_000);
    // The writer dies: its expiry timer goes with it.
    writer.stop();
    assertEquals((await kv.get(typingExpiryKey(ROOM))).value, now + 10_000);
    assertEquals(await sweeper.expireDue(), 0, "nothing due yet");

    now += 10_000;
    assertEquals(await sweeper.expireDue(), 1);
    assertEquals(woken, [ROOM]);
    const record = await kv.get<Record<string, number>>(typingKey(ROOM));
    assertEquals(Object.keys(record.value!), ["@b:there.test"]);
    // The room's syncs in other processes wake with the same commit.
    assertEquals((await kv.get(wakeKeys.room(ROOM))).versionstamp, record.versionstamp);
    assertEquals((await kv.get(typingExpiryKey(ROOM))).value, now + 10_000);

    now += 10_000;
    assertEquals(await sweeper.expireDue(), 1);
    assertEquals((await kv.get(typingKey(ROOM))).value, {});
    // Nobody types: the room leaves the index, and a later run finds nothing.
    assertEquals((await kv.get(typingExpiryKey(ROOM))).value, null);
    assertEquals(await sweeper.expireDue(), 0);
    assertEquals(woken, [ROOM, ROOM]);
  } finally {
    writer.stop();
    sweeper.stop();
    kv.close();
  }
});

Deno.test("typing expiry job: an aborted run stops between rooms", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const woken: string[] = [];
  const writer = service(kv, () => now, []);
  const sweeper = service(kv, () => now, woken);
  try {
    for (const room of ["!a:here.test", "!b:here.test"]) {
      await writer.setRemoteTyping("@a:there.test", room, true, 1_000);
    }
    writer.stop();
    now += 1_000;
    const stopped = new AbortController();
    stopped.abort();
    assertEquals(await sweeper.expireDue(stopped.signal), 0);
    assertEquals(await sweeper.expireDue(), 2);
    assert(woken.length === 2);
  } finally {
    writer.stop();
    sweeper.stop();
    kv.close();
  }
});
