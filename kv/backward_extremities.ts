/**
 * The backward extremities projection (`roomid_backwardextremity`): per room, the events cited
 * as prev events by events of its log but not in that log (Synapse's
 * `event_backward_extremities`). They are where our copy of the room's DAG has a hole: before
 * the first event of a room we joined, or in the middle, where the incoming-PDU handler crossed
 * a gap with `/state_ids`. Each entry holds the position of the event that last cited it, so
 * /messages can tell when its walk has reached the hole (domain/federation/backfill.ts).
 *
 * Planned event by event with the batch (kv/projections.ts) and written in its commit: an event
 * whose prev event is neither planned earlier in the batch nor in this room's log adds an entry;
 * every appended event deletes its own entry, unconditionally, since whether it was cited is
 * not known without a read and a delete of a missing key costs one mutation. A prev event of
 * another room counts as missing, as the store never takes it as held, so no entry ever joins
 * two rooms' histories.
 */
import type { PlannedMutation } from "./commit_budget.ts";
import type { EventStoreKeys } from "./schema.ts";
import type { StoreContext } from "./store_context.ts";

/**
 * Entries read per room at most: a room is expected to hold a few (one per hole); one with very
 * many is served the first ones by event ID, and the rest once those are filled.
 */
const MAX_LISTED = 1000;

/** Changes of one batch: missing event ID -> citing position (set), or null (filled). */
export type BackwardExtremityPlan = Map<string, number | null>;

/** Note an appended event: it fills its own entry, and opens one for each prev it lacks. */
export function noteBackwardExtremities(
  plan: BackwardExtremityPlan,
  eventId: string,
  position: number,
  missingPrevs: readonly string[],
): void {
  plan.set(eventId, null);
  for (const id of missingPrevs) plan.set(id, position);
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
