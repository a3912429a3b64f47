import { assert, assertEquals } from "../../assert.ts";
import type { OnWake, WakeSource, WakeTopic } from "../../../domain/ports/wake_source.ts";
import { SyncNotifier } from "../../../domain/sync/sync_notifier.ts";
import { ALICE } from "../room_fixture.ts";

/** A wake source that records subscriptions and lets the test deliver wakes. */
class RecordingWakeSource implements WakeSource {
  readonly subscriptions: {
    topics: readonly WakeTopic[];
    after: string;
    onWake: OnWake;
    open: boolean;
  }[] = [];

  constructor(readonly mode: "watch" | "poll" | "local" = "poll") {}

  watchAfter(topics: readonly WakeTopic[], after: string, onWake: OnWake): () => void {
    const subscription = { topics, after, onWake, open: true };
    this.subscriptions.push(subscription);
    return () => subscription.open = false;
  }

  watchFromNow(): Promise<() => void> {
    throw new Error("the notifier subscribes after a position");
  }

  close(): void {}
}

const V1 = "0000000000000000a000";
const V2 = "0000000000000000b000";

Deno.test("wakeAfter subscribes the user's and rooms' wake topics after the token's commit", () => {
  const wakes = new RecordingWakeSource();
  const notifier = new SyncNotifier(wakes);
  const watch = notifier.watch(ALICE, ["!a:x", "!b:x", "!a:x"]);
  assertEquals(wakes.subscriptions.length, 0, "nothing until the watch is about to wait");
  watch.wakeAfter(`s${V1}`);
  watch.wakeAfter(`s${V2}`);
  assertEquals(wakes.subscriptions.length, 1, "once per watch");
  const [subscription] = wakes.subscriptions;
  assertEquals(subscription.after, V1);
  assertEquals(subscription.topics, [
    { kind: "user", userId: ALICE },
    { kind: "room", roomId: "!a:x" },
    { kind: "room", roomId: "!b:x" },
  ]);
  watch.close();
  assertEquals(subscription.open, false, "closing the watch unsubscribes");
});

Deno.test("another process's wake wakes the wait and names its commit (wokenAt)", async () => {
  const wakes = new RecordingWakeSource();
  const notifier = new SyncNotifier(wakes);
  const watch = notifier.watch(ALICE, ["!a:x"]);
  watch.wakeAfter(`s${V1}`);
  const waiting = watch.wait(60_000);
  wakes.subscriptions[0].onWake(V2);
  assert(await waiting);
  assertEquals(watch.wokenAt, `s${V2}`);
  watch.close();
});

Deno.test("a local wake source, or none, subscribes nothing", () => {
  const local = new RecordingWakeSource("local");
  for (const notifier of [new SyncNotifier(local), new SyncNotifier()]) {
    const watch = notifier.watch(ALICE, ["!a:x"]);
    watch.wakeAfter(`s${V1}`);
    assertEquals(watch.changed, false);
    watch.close();
  }
  assertEquals(local.subscriptions.length, 0);
});

Deno.test("a closed watch does not subscribe", () => {
  const wakes = new RecordingWakeSource();
  const watch = new SyncNotifier(wakes).watch(ALICE, []);
  watch.close();
  watch.wakeAfter(`s${V1}`);
  assertEquals(wakes.subscriptions.length, 0);
});
