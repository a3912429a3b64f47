/**
 * The long-poll loop /sync and sliding sync share: read, and while the read has nothing new and
 * time is left, wait for a wake and read again. The watch is registered before the read it
 * covers, `wakeAfter` subscribes to other processes' commits after the position that read
 * covered, and the next watch is registered before the woken one is closed, so nothing that
 * commits meanwhile is missed. A woken read may skip the barrier and read up to the commit that
 * woke it, with the memberships the next watch read (see `wokenUpTo`).
 */
import type { EventStore, Membership } from "../ports/event_store.ts";
import type { SyncNotifier, SyncWatch } from "./sync_notifier.ts";

/** Memberships whose rooms wake a waiting request. */
const WATCHED = new Set(["join", "invite", "knock"]);

/** One read's outcome. */
export interface PolledRead<T> {
  value: T;
  /** The position the read covered (a sync token). */
  upTo: string;
  /** Answer now: the read has news, or the caller never waits for this request. */
  done: boolean;
}

/** What the loop needs. */
export interface LongPollParams<T> {
  store: Pick<EventStore, "roomsOfUser">;
  notifier: SyncNotifier;
  userId: string;
  /** When to stop waiting (ms since the epoch, on `now`'s clock). */
  deadline: number;
  now: () => number;
  /** Aborted when the client goes away; asked for only when about to wait. */
  clientGone?: () => AbortSignal;
  /**
   * One read. `upTo` absent: take a barrier first; present: read up to it, with `memberships`
   * read after every commit up to it completed.
   */
  read: (upTo?: string, memberships?: readonly Membership[]) => Promise<PolledRead<T>>;
}

/** Read, and long-poll while there is nothing new; the last read's value. */
export async function longPoll<T>(params: LongPollParams<T>): Promise<T> {
  let { watch } = await watchUser(params);
  try {
    let upTo: string | undefined;
    let memberships: Membership[] | undefined;
    for (;;) {
      const read = await params.read(upTo, memberships);
      const remaining = params.deadline - params.now();
      if (read.done || remaining <= 0) return read.value;
      const signal = params.clientGone?.();
      if (signal?.aborted) return read.value;
      // Other processes' commits after what this read covered wake it too. Subscribed only
      // now, as a request that answers at once needs no subscription; a commit landing between
      // the read and here is newer than the read's position, so it wakes the wait at once.
      watch.wakeAfter(read.upTo);
      // Woken: read again (a wake may be spurious, e.g. an event a filter hides).
      if (!(await watch.wait(remaining, signal))) return read.value;
      // The next watch is registered before this one is read and closed, so a commit that
      // completes meanwhile lands in one of them: in `wokenAt` below, or as the next wake.
      const wokenBefore = watch.wokenAt;
      const next = await watchUser(params);
      const woken = watch.wokenAt;
      watch.close();
      watch = next.watch;
      // The memberships were read after every commit up to `wokenBefore` completed, so they
      // hold every join up to it. A newer wake that came during that read (another process's
      // commit seen by a poll tick, say) may name a join or invite they missed: reading up to
      // it with them would answer without the room and move the position past it for good, so
      // take a barrier and read the memberships afresh instead.
      upTo = woken === wokenBefore ? wokenUpTo(woken, read.upTo) : undefined;
      memberships = upTo === undefined ? undefined : next.memberships;
    }
  } finally {
    watch.close();
  }
}

/**
 * Register a waiter on the user and the rooms they can see now; before any read it covers.
 * Returns the memberships read for it too.
 */
async function watchUser(
  params: Pick<LongPollParams<unknown>, "store" | "notifier" | "userId">,
): Promise<{ watch: SyncWatch; memberships: Membership[] }> {
  const memberships = await params.store.roomsOfUser(params.userId);
  const visible = memberships.filter((m) => WATCHED.has(m.membership)).map((m) => m.roomId);
  return { watch: params.notifier.watch(params.userId, visible), memberships };
}

/**
 * Where a woken long-poll may read up to without writing a barrier: the newest commit that woke
 * it, when every wake named its commit (else undefined: take a barrier).
 *
 * Why that is safe. The wake came from `onRoomAppended` (or a notifier given a versionstamp)
 * after commit V completed. KV orders commits by versionstamp and a commit is visible to every
 * read that starts after it completes; SQLite KV serialises commits, so when V is done every
 * commit <= V is done too, and FoundationDB reads at a read version >= V, which sees every
 * commit <= V. So the reads that follow see everything with a versionstamp <= V, exactly what a
 * barrier at V would promise, and the response may cover (since, V] and return V as next_batch.
 * Writes of any stream that commit after V (a receipt, the notification log of a later event)
 * are > V: left out now, they are in the next sync's window (V, ...], never skipped.
 * The previous read's token is itself a completed barrier, so the larger of the two is as good;
 * taking it keeps tokens growing when the wake was for a commit that read already covered.
 */
export function wokenUpTo(woken: string | undefined, previous: string): string | undefined {
  if (woken === undefined) return undefined;
  return woken > previous ? woken : previous;
}
