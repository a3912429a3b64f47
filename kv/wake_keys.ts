/**
 * The writers' half of cross-process wake-ups (domain/ports/wake_source.ts): add the wake keys
 * of what a commit changes to that same commit. Blind sets, never checked, so they cannot make
 * a commit conflict; each costs one mutation of the commit's budget.
 */
import type { WakeTopic } from "../domain/ports/wake_source.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import { wakeKeys } from "./schema.ts";

/** The KV key of a wake topic. */
export function wakeKey(topic: WakeTopic): Deno.KvKey {
  switch (topic.kind) {
    case "user":
      return wakeKeys.user(topic.userId);
    case "room":
      return wakeKeys.room(topic.roomId);
    case "outbox":
      return wakeKeys.outbox(topic.stream);
  }
}

/** What a commit changed, for waiters: users' own streams, rooms, outbox streams. */
export interface WakeTargets {
  userIds?: Iterable<string>;
  roomIds?: Iterable<string>;
  outboxStreams?: Iterable<string>;
}

/** Number of mutations `addWakes` adds for `targets` (for commit budgets). */
export function wakeMutationCount(targets: WakeTargets): number {
  return new Set(targets.userIds ?? []).size + new Set(targets.roomIds ?? []).size +
    new Set(targets.outboxStreams ?? []).size;
}

/** Bump the wake keys of `targets` in `op` (the commit that makes the change). */
export function addWakes(op: Deno.AtomicOperation, targets: WakeTargets): Deno.AtomicOperation {
  for (const userId of new Set(targets.userIds ?? [])) op.set(wakeKeys.user(userId), 0);
  for (const roomId of new Set(targets.roomIds ?? [])) op.set(wakeKeys.room(roomId), 0);
  for (const stream of new Set(targets.outboxStreams ?? [])) op.set(wakeKeys.outbox(stream), 0);
  return op;
}

/**
 * The same bumps as planned mutations, for commits built as a plan and measured against KV's
 * limits before they are applied (the event log's group commit, kv/commit_budget.ts).
 */
export function plannedWakes(targets: WakeTargets): PlannedMutation[] {
  const out: PlannedMutation[] = [];
  for (const userId of new Set(targets.userIds ?? [])) {
    out.push({ op: "set", key: wakeKeys.user(userId), value: 0 });
  }
  for (const roomId of new Set(targets.roomIds ?? [])) {
    out.push({ op: "set", key: wakeKeys.room(roomId), value: 0 });
  }
  for (const stream of new Set(targets.outboxStreams ?? [])) {
    out.push({ op: "set", key: wakeKeys.outbox(stream), value: 0 });
  }
  return out;
}
