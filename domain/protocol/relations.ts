/**
 * Event relationships (client-server spec, "Forming relationships between events"): which
 * parent an event points at through `content["m.relates_to"]`, and the relationship types the
 * server aggregates (`m.thread`, `m.replace`, `m.reference`).
 */
import { isJsonObject, type JsonObject } from "./json.ts";

/** The relationship types the server bundles into `unsigned["m.relations"]`. */
export const AGGREGATED_REL_TYPES = ["m.thread", "m.replace", "m.reference"] as const;

/** One of AGGREGATED_REL_TYPES. */
export type AggregatedRelType = typeof AGGREGATED_REL_TYPES[number];

/**
 * Longest `rel_type` and parent event ID indexed: both end up in KV keys (2 KiB at most, beside
 * a room ID), and the spec's identifiers stay far below it (event IDs are at most 255 bytes).
 */
export const MAX_RELATION_FIELD_BYTES = 255;

/** A relation an event declares. */
export interface Relation {
  relType: string;
  /** The parent event's ID. */
  eventId: string;
}

const encoder = new TextEncoder();

/**
 * The relation `content` declares, or undefined: `m.relates_to` must be an object with string
 * `rel_type` and `event_id` (a reply's `m.in_reply_to` alone is no relation), each at most 255
 * bytes, and the event may not point at itself.
 */
export function relationOf(content: JsonObject, ownEventId?: string): Relation | undefined {
  const relatesTo = content["m.relates_to"];
  if (!isJsonObject(relatesTo)) return undefined;
  const { rel_type: relType, event_id: eventId } = relatesTo;
  if (typeof relType !== "string" || typeof eventId !== "string") return undefined;
  if (relType === "" || !eventId.startsWith("$") || eventId === ownEventId) return undefined;
  if (encoder.encode(relType).length > MAX_RELATION_FIELD_BYTES) return undefined;
  if (encoder.encode(eventId).length > MAX_RELATION_FIELD_BYTES) return undefined;
  return { relType, eventId };
}

/** Whether `relType` is one the server aggregates. */
export function isAggregatedRelType(relType: string): relType is AggregatedRelType {
  return (AGGREGATED_REL_TYPES as readonly string[]).includes(relType);
}

/** Relation hops followed to find an event's thread (an edit of a reply is in the thread too). */
export const THREAD_HOPS = 3;

/** Where an event sits among threads: its thread, and the events its relations lead to. */
export interface EventThread {
  /** The root of the thread it is in, or "main" (thread roots are in the main timeline). */
  thread: string;
  /** The parents its relations lead to, nearest first (at most THREAD_HOPS). */
  ancestors: string[];
}

/**
 * The thread an event is in: the root of its `m.thread` relation, found directly or through up
 * to THREAD_HOPS relations (an edit or reaction of a thread reply); "main" otherwise.
 */
export async function threadOfEvent(
  content: JsonObject,
  getContent: (eventId: string) => Promise<JsonObject | undefined>,
): Promise<EventThread> {
  const ancestors: string[] = [];
  let relation = relationOf(content);
  for (let hop = 0; hop < THREAD_HOPS && relation; hop++) {
    ancestors.push(relation.eventId);
    if (relation.relType === "m.thread") return { thread: relation.eventId, ancestors };
    const parent = await getContent(relation.eventId);
    if (!parent) break;
    relation = relationOf(parent);
  }
  return { thread: "main", ancestors };
}
