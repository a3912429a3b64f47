/**
 * Idempotent state sends: a state event whose content equals the current state's for its key,
 * from the same sender, changes nothing, so the existing event is returned instead of a new one
 * (as Synapse's deduplicate_state_event does). A retried `PUT /state` or a second `/join` then
 * adds nothing to the timeline and answers the event ID the client already has.
 */
import { canonicalJson } from "../protocol/canonical_json.ts";
import { stateKey as toStateKey } from "../protocol/events.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";

/** A state event about to be sent. */
export interface StateSend {
  roomId: string;
  sender: string;
  type: string;
  stateKey: string;
  content: JsonObject;
}

/**
 * The ID of the current state event `send` would repeat, or null when it would change state.
 * Only while the sender is joined (or, for its own member event, holds that membership): a
 * user who has left learns nothing about state changed since, and gets the auth rules' answer.
 */
export async function identicalCurrentState(
  store: Pick<EventReader, "currentStateEventIds" | "getEvents">,
  send: StateSend,
): Promise<string | null> {
  const key = toStateKey(send.type, send.stateKey);
  const senderKey = toStateKey("m.room.member", send.sender);
  const ids = await store.currentStateEventIds(send.roomId, [key, senderKey]);
  const currentId = ids.get(key);
  const membershipId = ids.get(senderKey);
  if (currentId === undefined || membershipId === undefined) return null;
  const events = await store.getEvents([...new Set([currentId, membershipId])]);
  const current = events.get(currentId);
  const membership = events.get(membershipId)?.pdu.content.membership;
  if (!current || current.pdu.sender !== send.sender) return null;
  // A joined sender, or a member event repeating the sender's own membership (a second join).
  const ownMember = send.type === "m.room.member" && send.stateKey === send.sender;
  if (membership !== "join" && !ownMember) return null;
  return canonicalJson(current.pdu.content) === canonicalJson(send.content) ? currentId : null;
}
