/**
 * Checks of a client's new event that declares a relation, before it is sent, as Synapse makes
 * them (handlers/message.py, `_validate_event_relation`): the parent must be in the same room
 * and known here (or already the target of other relations); an annotation needs a key of at
 * most 500 characters and may not repeat the sender's own (same type and key); a thread may
 * not start from an event that itself relates to another. A refused event writes nothing.
 */
import { invalidParam } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { RelationReader } from "../ports/relation_store.ts";
import { isJsonObject } from "../protocol/json.ts";
import { relationOf } from "../protocol/relations.ts";

/** Longest annotation key accepted (Synapse's limit). */
export const MAX_ANNOTATION_KEY_LENGTH = 500;
/** A parent's annotations checked for a repeat of the sender's own. */
const MAX_ANNOTATIONS_CHECKED = 1000;

/** What the checks read. */
export interface RelationValidationDeps {
  store: Pick<EventReader, "getEvent" | "getEvents" | "redactionsOf">;
  relations: Pick<RelationReader, "children">;
}

/** Refuse (400 M_INVALID_PARAM) a new event whose relation is bogus; see the module comment. */
export async function validateNewRelation(
  deps: RelationValidationDeps,
  event: { roomId: string; sender: string; type: string; content: JsonObject },
): Promise<void> {
  const relation = relationOf(event.content);
  if (!relation) return;
  const { store, relations } = deps;
  const parent = await store.getEvent(relation.eventId);
  if (parent) {
    if (parent.roomId !== event.roomId) throw invalidParam("Relations must be in the same room");
  } else {
    // A client may know the parent from other servers' relations to it; otherwise it cannot.
    const known = await relations.children(event.roomId, relation.eventId, {
      dir: "b",
      limit: 1,
    });
    if (known.children.length === 0) {
      throw invalidParam("Can't send a relation to an unknown event");
    }
  }
  if (relation.relType === "m.annotation") {
    const relatesTo = event.content["m.relates_to"];
    const key = isJsonObject(relatesTo) ? relatesTo.key : undefined;
    if (typeof key !== "string") throw invalidParam("Missing annotation key");
    if (key.length > MAX_ANNOTATION_KEY_LENGTH) throw invalidParam("Annotation key is too long");
    const page = await relations.children(event.roomId, relation.eventId, {
      relType: "m.annotation",
      dir: "b",
      limit: MAX_ANNOTATIONS_CHECKED,
    });
    const own = page.children.filter((c) => c.sender === event.sender && c.type === event.type)
      .map((c) => c.eventId);
    if (own.length > 0) {
      // A reaction taken back (redacted) may be given again.
      const [found, redacted] = await Promise.all([
        store.getEvents(own),
        store.redactionsOf(event.roomId, own),
      ]);
      for (const mine of found.values()) {
        if (redacted.has(mine.eventId)) continue;
        const rel = mine.pdu.content["m.relates_to"];
        if (isJsonObject(rel) && rel.key === key) {
          throw invalidParam("Can't send the same reaction twice");
        }
      }
    }
  } else if (relation.relType === "m.thread" && parent && relationOf(parent.pdu.content)) {
    throw invalidParam("Cannot start threads from an event with a relation");
  }
}
