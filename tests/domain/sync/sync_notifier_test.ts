import { assert, assertEquals } from "../../assert.ts";
import { SyncNotifier } from "../../../domain/sync/sync_notifier.ts";
import { wokenUpTo } from "../../../domain/sync/sync_service.ts";
import { ALICE, BOB, createPublicRoom, openRoomFixture } from "../room_fixture.ts";

Deno.test("a change before the wait is not lost", async () => {
  const notifier = new SyncNotifier();
  const watch = notifier.watch(ALICE, ["!a:x"]);
  notifier.notifyRoom("!a:x");
  assert(await watch.wait(60_000));
  watch.close();
  assertEquals(notifier.watching, 0);
});

Deno.test("notifications for other users and rooms do not wake a watch", async () => {
  const notifier = new SyncNotifier();
  const watch = notifier.watch(ALICE, ["!a:x"]);
  notifier.notifyRoom("!b:x");
  notifier.notifyUser(BOB);
  assertEquals(watch.changed, false);
  assertEquals(await watch.wait(1), false);
  const waiting = watch.wait(60_000);
  notifier.notifyUser(ALICE);
  assert(await waiting);
  watch.close();
});

Deno.test("closing a watch ends its wait without a change", async () => {
  const notifier = new SyncNotifier();
  const watch = notifier.watch(ALICE, []);
  const waiting = watch.wait(60_000);
  watch.close();
  assertEquals(await waiting, false);
});

Deno.test("an append wakes watchers of the room and users it invites", async () => {
  const fx = await openRoomFixture();
  try {
    const notifier = new SyncNotifier();
    notifier.attach(fx.store);
    const roomId = await createPublicRoom(fx.sender, "10");
    const alice = notifier.watch(ALICE, [roomId]);
    const bob = notifier.watch(BOB, []);
    const bobWaits = bob.wait(60_000);
    await fx.sender.send({
      roomId,
      sender: ALICE,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "invite" },
    });
    assert(await alice.wait(60_000));
    assert(await bobWaits, "the invited user's sync wakes");
    alice.close();
    bob.close();
  } finally {
    fx.close();
  }
});

Deno.test("a watch knows the newest commit that woke it, unless a wake named none", () => {
  const notifier = new SyncNotifier();
  const watch = notifier.watch(ALICE, ["!a:x"]);
  assertEquals(watch.wokenAt, undefined);
  notifier.notifyRoom("!a:x", "00000000000000000005");
  notifier.notifyUser(ALICE, "00000000000000000009");
  notifier.notifyRoom("!a:x", "00000000000000000007");
  assertEquals(watch.wokenAt, "s00000000000000000009");
  // Typing, say: its write has no versionstamp here, so only a barrier covers it.
  notifier.notifyRoom("!a:x");
  notifier.notifyRoom("!a:x", "0000000000000000000a");
  assertEquals(watch.wokenAt, undefined);
  watch.close();
});

Deno.test("a woken sync reads up to the newer of the waking commit and its last token", () => {
  assertEquals(wokenUpTo(undefined, "s00000000000000000005"), undefined);
  assertEquals(
    wokenUpTo("s00000000000000000009", "s00000000000000000005"),
    "s00000000000000000009",
  );
  assertEquals(
    wokenUpTo("s00000000000000000003", "s00000000000000000005"),
    "s00000000000000000005",
  );
});
