/**
 * The reads an append batch makes once before planning: which of its events are stored
 * already, and where the prev events it cites from outside the batch sit (kv/projections.ts
 * plans with them).
 */
import { referencedIds } from "../domain/protocol/events.ts";
import type { AppendRequest, StoredEvent } from "../domain/ports/event_store.ts";
import { type EventPlacement, readEventPlacements, readStoredEvents } from "./event_reads.ts";
import type { StoreContext } from "./store_context.ts";

/**
 * Reads made once for a whole batch before planning, so planning does not wait on KV request by
 * request or event by event. Both maps say "looked up" by holding a key; null means unknown.
 */
export interface BatchLookups {
  /** The batch's own event IDs: the stored ones are duplicates. */
  stored: Map<string, StoredEvent | null>;
  /**
   * IDs taken as new without a read: the commit checks each is still unused instead, and when
   * such a commit fails the caller replans with `optimistic` off to find out why.
   */
  assumedNew: Set<string>;
  /** Prev events cited from outside the batch. */
  placements: Map<string, EventPlacement | null>;
}

/**
 * Events a batch may take as new on trust. Each costs one of a commit's 100 checks, so a
 * larger batch reads instead (which also keeps a big request within the check limit).
 */
const MAX_ASSUMED_NEW = 32;

/**
 * Look up, in parallel reads, which of the requests' events are stored already and where the
 * prev events they cite from outside the batch sit. Events are immutable once stored and a
 * same-room commit in between moves the head (failing the check), so the answers hold for
 * the whole planning of one attempt.
 *
 * With `optimistic`, events not in the cache are taken as new and checked at commit instead of
 * read: a duplicate is rare, while the read cost as much as the commit itself on fast KV.
 */
export async function lookupBatch(
  ctx: StoreContext,
  requests: readonly AppendRequest[],
  optimistic: boolean,
): Promise<BatchLookups> {
  const ids = new Set<string>();
  for (const request of requests) for (const e of request.events) ids.add(e.eventId);
  const prevs = new Set<string>();
  for (const request of requests) {
    for (const e of request.events) {
      // A malformed list is left for planning to reject with the request's own error.
      if (!Array.isArray(e.pdu.prev_events)) continue;
      for (const id of referencedIds(e.pdu.prev_events)) {
        if (typeof id === "string" && !ids.has(id)) prevs.add(id);
      }
    }
  }
  const assumedNew = new Set<string>();
  if (optimistic) {
    for (const id of ids) if (!ctx.events.get(id)) assumedNew.add(id);
    if (assumedNew.size > MAX_ASSUMED_NEW) assumedNew.clear();
  }
  const [found, placements] = await Promise.all([
    readStoredEvents(ctx, [...ids].filter((id) => !assumedNew.has(id))),
    readEventPlacements(ctx, [...prevs]),
  ]);
  const stored = new Map<string, StoredEvent | null>();
  for (const id of ids) stored.set(id, found.get(id) ?? null);
  return { stored, assumedNew, placements };
}
