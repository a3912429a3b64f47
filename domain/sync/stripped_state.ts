/**
 * `invite_state` and `knock_state`: stripped events that let a client show a room it is not
 * in. A federated invite carries them in `unsigned.invite_room_state`/`knock_room_state`;
 * otherwise they are read from the state before the membership event. The create event is
 * always among them (MSC4311, needed to know a v12 room's creators).
 */
import { toStrippedStateEvent } from "../client_event.ts";
import { type StateKey, stateKey } from "../events.ts";
import { isJsonObject, type JsonObject } from "../json.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";

const STRIPPED_TYPES = [
  "m.room.create",
  "m.room.join_rules",
  "m.room.name",
  "m.room.avatar",
  "m.room.canonical_alias",
  "m.room.encryption",
  "m.room.topic",
];

/** The stripped state to show with an invite or knock `membership` event. */
export async function strippedState(
  store: EventStore,
  membership: StoredEvent,
): Promise<JsonObject[]> {
  const carried = membership.pdu.unsigned?.invite_room_state ??
    membership.pdu.unsigned?.knock_room_state;
  const out: JsonObject[] = Array.isArray(carried) ? carried.filter(isJsonObject) : [];
  if (out.length === 0) {
    const before = await store.stateAtEvent(membership.eventId, "before");
    if (before) {
      const keys: StateKey[] = STRIPPED_TYPES.map((type) => stateKey(type, ""));
      keys.push(stateKey("m.room.member", membership.pdu.sender));
      const ids = keys.flatMap((key) => before.get(key) ?? []);
      const events = await store.getEvents(ids);
      for (const id of ids) {
        const event = events.get(id);
        if (event && event.eventId !== membership.eventId) {
          out.push(toStrippedStateEvent(event.pdu));
        }
      }
    }
  }
  out.push(toStrippedStateEvent(membership.pdu));
  return out;
}
