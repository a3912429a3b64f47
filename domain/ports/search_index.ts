/**
 * The storage port of full-text search over room events: the token index the event store
 * writes in each event's own commit (see kv/search_index.ts) and the reads search needs.
 */
import type { StoredEvent } from "./event_store.ts";

/** One indexed occurrence of a term in an event. */
export interface SearchPosting {
  roomId: string;
  /** The event's position in its room's log. */
  position: number;
  /** The term as indexed (it starts with the query term that found it). */
  term: string;
  /** Index into SEARCH_KEYS of the key the term was found in. */
  key: number;
  /** The event's origin_server_ts (0 when absent), for the `recent` order. */
  ts: number;
  /** Occurrences of the term in the text. */
  count: number;
  /** Words in the text. */
  words: number;
}

/** What search reads. */
export interface SearchIndexReader {
  /**
   * Postings of every term starting with `prefix` in one room, at most `limit` of them (the
   * newest of each term first); `more` says some were left out.
   */
  postings(
    roomId: string,
    prefix: string,
    limit: number,
  ): Promise<{ postings: SearchPosting[]; more: boolean }>;
  /** The events at these log positions of a room; positions without an event are absent. */
  eventsAt(roomId: string, positions: readonly number[]): Promise<Map<number, StoredEvent>>;
}
