/**
 * Wake fan-outs too wide for the commit that makes a change: a user's presence or device list
 * concerns every room they share, and a user may be in more rooms than one commit can bump
 * beside the change. What fits goes in the change's commit (`fitWakes`); the rest is bumped in
 * blind commits right after it (`commitWakes`). That is still safe: those commits come after
 * the change, so a waiter they wake reads up to a versionstamp past the change and sees it.
 * What a crash between the two loses is only the wake-up (the waiter answers at its timeout),
 * never the change.
 */
import {
  addCommitSizes,
  commitOverLimit,
  type CommitSize,
  measureCommit,
  type PlannedMutation,
  SplitCommitWriter,
} from "./commit_budget.ts";
import { EventStoreKeys } from "./schema.ts";
import type { MembershipRecord } from "./store_records.ts";
import { plannedWakes, type WakeTargets } from "./wake_keys.ts";

/** The live membership projection (no replay namespace: waiters watch live rooms only). */
const LIVE_KEYS = new EventStoreKeys();

/**
 * Split the bumps of `targets` into those that fit a commit already holding `used` (users
 * first, then rooms, in order) and the rest, for `commitWakes` after that commit.
 */
export function fitWakes(
  targets: WakeTargets,
  used: CommitSize,
): { now: PlannedMutation[]; rest: PlannedMutation[] } {
  const all = plannedWakes(targets);
  let size = used;
  for (let i = 0; i < all.length; i++) {
    const next = addCommitSizes(size, measureCommit([all[i]]));
    if (commitOverLimit(next) !== null) return { now: all.slice(0, i), rest: all.slice(i) };
    size = next;
  }
  return { now: all, rest: [] };
}

/**
 * Bump wake keys in blind commits of their own (as many as KV's limits need), after the commit
 * of the change they announce. That change is committed whatever happens here, so a failure is
 * logged, not thrown: only the wake-up is late (the waiter's timeout).
 */
export async function commitWakes(
  kv: Deno.Kv,
  wakes: PlannedMutation[] | WakeTargets,
): Promise<void> {
  const planned = Array.isArray(wakes) ? wakes : plannedWakes(wakes);
  if (planned.length === 0) return;
  try {
    const writer = new SplitCommitWriter(kv);
    for (const wake of planned) await writer.add([wake]);
    await writer.flush();
  } catch (error) {
    console.warn("wake keys: a follow-up bump failed", error);
  }
}

/**
 * The rooms where `userIds` hold one of `memberships`, from the live membership projection:
 * whose syncs hear about these users' presence or device lists.
 */
export async function roomsOfUsers(
  kv: Deno.Kv,
  userIds: Iterable<string>,
  memberships: readonly string[],
): Promise<Set<string>> {
  const rooms = new Set<string>();
  for (const userId of new Set(userIds)) {
    const prefix = LIVE_KEYS.userRoomPrefix(userId);
    for await (const entry of kv.list<MembershipRecord>({ prefix }, { batchSize: 1000 })) {
      if (memberships.includes(entry.value.membership)) {
        rooms.add(entry.key[entry.key.length - 1] as string);
      }
    }
  }
  return rooms;
}
