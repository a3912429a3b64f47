/**
 * The backward extremities projection (`roomid_backwardextremity`): per room, the events cited
 * as prev events by events of its log but not in that log (Synapse's
 * `event_backward_extremities`). They are where our copy of the room's DAG has a hole: before
 * the first event of a room we joined, or in the middle, where the incoming-PDU handler crossed
 * a gap with `/state_ids`. Each entry holds the position of the event that last cited it, so
 * /messages can tell when its walk has reached the hole (domain/federation/backfill.ts).
 *
 * Planned event by event with the batch (kv/projections.ts) and written in its commit: an event
 * whose prev event is neither planned earlier in the batch nor in this room's log adds an entry.
 * Whether an appended event fills an entry is known without a read from the room head, which
 * every commit rewrites anyway: `backward_extremities` lists the open ones (sorted, at most
 * MAX_TRACKED_BACKWARD), so an event deletes its entry only when listed, and a local send (an
 * ID nobody could cite before it existed) writes nothing here. Beyond the bound the head holds
 * null, "unknown": every appended event deletes its entry unconditionally (a delete of a missing
 * key costs one mutation), and the list is read back from the projection, overlaid with the
 * batch's plan, at the next backfilled event or one appended with a staged state: only remote
 * history fills holes, and those appends bring it in bulk (and read plenty already). A head
 * written before the list was kept (field absent) reads it back at its next append, once.
 *
 * The list is a pure function of the log's arrival order (each step is exact, or null, or an
 * exact read-back of the projection at that point), whatever the batching, so replay rebuilds
 * the very same head. One difference remains possible only for heads written before the list
 * existed: if the room overflowed in its past and forward events alone (no backfill, no staged
 * state) brought it back under the bound, the live head lists them where the rebuild still says
 * null, until the room's next backfilled or staged event reads them back in both. A head not
 * appended to since the upgrade still lacks the field, and replay reports it as it reports any
 * record written before its shape changed; replaying into a fresh store migrates it.
 *
 * A prev event of another room counts as missing, as the store never takes it as held, so no
 * entry ever joins two rooms' histories.
 */
import type { PlannedMutation } from "./commit_budget.ts";
import type { EventStoreKeys } from "./schema.ts";
import type { StoreContext } from "./store_context.ts";

/**
 * Entries read per room at most: a room is expected to hold a few (one per hole); one with very
 * many is served the first ones by event ID, and the rest once those are filled.
 */
const MAX_LISTED = 1000;

/**
 * Open backward extremities a room head lists at most. A room holds one per hole, and a joined
 * room one until backfill reaches its create event; 64 IDs (about 3 KB) keep the head, read by
 * every sync and rewritten by every commit, small.
 */
export const MAX_TRACKED_BACKWARD = 64;

/**
 * A head's view of its room's open backward extremities (`RoomHead.backward_extremities`): their
 * IDs sorted, or null when more than MAX_TRACKED_BACKWARD may be open.
 */
export type TrackedBackward = string[] | null;

/** Changes of one batch: missing event ID -> citing position (set), or null (filled). */
export type BackwardExtremityPlan = Map<string, number | null>;

/**
 * Note an appended event, given the open extremities before it: it fills its own entry when
 * listed (or, unknown, always), and opens one for each prev it lacks. Returns the list after it.
 */
export function noteBackwardExtremities(
  plan: BackwardExtremityPlan,
  tracked: TrackedBackward,
  eventId: string,
  position: number,
  missingPrevs: readonly string[],
): TrackedBackward {
  if (tracked === null || tracked.includes(eventId)) plan.set(eventId, null);
  for (const id of missingPrevs) plan.set(id, position);
  if (tracked === null) return null;
  if (missingPrevs.length === 0 && !tracked.includes(eventId)) return tracked;
  const open = new Set(tracked);
  open.delete(eventId);
  for (const id of missingPrevs) open.add(id);
  return open.size > MAX_TRACKED_BACKWARD ? null : [...open].sort();
}

/** Committed entries of a room as read once per batch: their IDs, and whether that is all. */
export interface CommittedBackward {
  ids: Set<string>;
  complete: boolean;
}

/**
 * The open backward extremities after `plan`, on top of the committed entries; undefined when
 * `committed` was read too short to tell (read again with `backwardReadLimit`).
 */
export function trackedAfter(
  committed: CommittedBackward,
  plan: BackwardExtremityPlan,
): TrackedBackward | undefined {
  if (!committed.complete) {
    // At least ids.size entries are committed, and the plan fills at most its deletes of them.
    return committed.ids.size >= backwardReadLimit(plan) ? null : undefined;
  }
  const open = new Set(committed.ids);
  for (const [id, position] of plan) {
    if (position === null) open.delete(id);
    else open.add(id);
  }
  return open.size > MAX_TRACKED_BACKWARD ? null : [...open].sort();
}

/** Committed entries to read to tell the list after `plan`: past the bound by its fills. */
export function backwardReadLimit(plan: BackwardExtremityPlan): number {
  let fills = 0;
  for (const position of plan.values()) if (position === null) fills++;
  return MAX_TRACKED_BACKWARD + 1 + fills;
}

/** Read a room's committed entries, at most `limit` of them. */
export async function readCommittedBackward(
  ctx: StoreContext,
  roomId: string,
  limit: number,
): Promise<CommittedBackward> {
  const ids = new Set<string>();
  const prefix = ctx.keys.backwardExtremityPrefix(roomId);
  for await (const entry of ctx.kv.list<number>({ prefix }, { limit })) {
    ids.add(entry.key[entry.key.length - 1] as string);
  }
  return { ids, complete: ids.size < limit };
}

/** The writes of a batch's plan. */
export function backwardExtremityWrites(
  keys: EventStoreKeys,
  roomId: string,
  plan: BackwardExtremityPlan,
): PlannedMutation[] {
  return [...plan].map(([id, position]) =>
    position === null
      ? { op: "delete", key: keys.backwardExtremity(roomId, id) }
      : { op: "set", key: keys.backwardExtremity(roomId, id), value: position }
  );
}

/** A room's backward extremities: missing event ID -> position of the event citing it. */
export async function readBackwardExtremities(
  ctx: StoreContext,
  roomId: string,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const prefix = ctx.keys.backwardExtremityPrefix(roomId);
  for await (const entry of ctx.kv.list<number>({ prefix }, { limit: MAX_LISTED })) {
    out.set(entry.key[entry.key.length - 1] as string, entry.value);
  }
  return out;
}
