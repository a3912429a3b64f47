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

/** The wake keys of `targets`, each once: what every writer below bumps. */
function wakeKeysOf(targets: WakeTargets): Deno.KvKey[] {
  return [
    ...[...new Set(targets.userIds ?? [])].map((userId) => wakeKeys.user(userId)),
    ...[...new Set(targets.roomIds ?? [])].map((roomId) => wakeKeys.room(roomId)),
    ...[...new Set(targets.outboxStreams ?? [])].map((stream) => wakeKeys.outbox(stream)),
  ];
}

/** Number of mutations `addWakes` adds for `targets` (for commit budgets). */
export function wakeMutationCount(targets: WakeTargets): number {
  return wakeKeysOf(targets).length;
}

/** Bump the wake keys of `targets` in `op` (the commit that makes the change). */
export function addWakes(op: Deno.AtomicOperation, targets: WakeTargets): Deno.AtomicOperation {
  for (const key of wakeKeysOf(targets)) op.set(key, 0);
  return op;
}

/**
 * The same bumps as planned mutations, for commits built as a plan and measured against KV's
 * limits before they are applied (the event log's group commit, kv/commit_budget.ts).
 */
export function plannedWakes(targets: WakeTargets): PlannedMutation[] {
  return wakeKeysOf(targets).map((key) => ({ op: "set", key, value: 0 }));
}
