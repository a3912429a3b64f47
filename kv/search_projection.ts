/**
 * The full-text search index as a projection of the log (`roomid_searchterm`): for each accepted
 * event with searchable text (domain/search/search_terms.ts), one entry per distinct term,
 *
 *     (roomId, term, position) -> [key, origin_server_ts, occurrences, words]
 *
 * written in the event's own commit by the batch planner (kv/projections.ts), so an event is
 * searchable exactly when it is stored. Keys sort by term, so the terms starting with a query
 * term are one range read per room; the position finds the event in the room's log without
 * another index. The first accepted redaction that takes effect on its target (as reads decide:
 * kv/redaction_effects.ts; one the pipeline withholds deletes nothing) deletes the target's
 * entries in its own commit (the target is read to know its terms); a redaction that arrives
 * before its target deletes nothing, and search drops results the read pipeline redacts anyway.
 * Replay rebuilds and compares it.
 */
import { eventTerms } from "../domain/search/search_terms.ts";
import type { Pdu } from "../domain/protocol/events.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import type { EventStoreKeys } from "./schema.ts";

/** A search index value: key index, origin_server_ts, occurrences of the term, words. */
export type SearchPostingRecord = [key: number, ts: number, count: number, words: number];

/** The index entries of an accepted event at `position` (none when it has no searchable text). */
export function searchPostingWrites(
  keys: EventStoreKeys,
  roomId: string,
  position: number,
  pdu: Pick<Pdu, "type" | "content" | "origin_server_ts" | "state_key">,
): PlannedMutation[] {
  const found = indexedTerms(pdu);
  if (!found) return [];
  const ts = typeof pdu.origin_server_ts === "number" && Number.isSafeInteger(pdu.origin_server_ts)
    ? pdu.origin_server_ts
    : 0;
  const out: PlannedMutation[] = [];
  for (const [term, count] of found.counts.terms) {
    const value: SearchPostingRecord = [found.key, ts, count, found.counts.words];
    out.push({ op: "set", key: keys.searchPosting(roomId, term, position), value });
  }
  return out;
}

/** Deletes of the index entries an event at `position` wrote (for its redaction). */
export function searchPostingDeletes(
  keys: EventStoreKeys,
  roomId: string,
  position: number,
  pdu: Pick<Pdu, "type" | "content" | "state_key">,
): PlannedMutation[] {
  const found = indexedTerms(pdu);
  if (!found) return [];
  return [...found.counts.terms.keys()].map((term) => ({
    op: "delete",
    key: keys.searchPosting(roomId, term, position),
  }));
}

/** Whether the event is indexed at all (only these are worth reading back on redaction). */
export function isSearchIndexed(pdu: Pick<Pdu, "type" | "content" | "state_key">): boolean {
  return indexedTerms(pdu) !== null;
}

function indexedTerms(pdu: Pick<Pdu, "type" | "content" | "state_key">) {
  // m.room.name and m.room.topic count as state events only (state_key ""), as the spec has them.
  if (pdu.type !== "m.room.message" && pdu.state_key !== "") return null;
  return eventTerms(pdu.type, pdu.content);
}
