/**
 * The spec's "auth events selection": which current state entries an event must cite in its
 * `auth_events`. The event builder uses it to pick auth events; the auth rules use it to reject
 * events that cite anything else.
 */
import { isJsonObject, type JsonObject } from "./json.ts";
import { type StateKey, stateKey } from "./events.ts";
import type { RoomVersion } from "./room_versions.ts";

/** The parts of an event that decide its auth events. */
export interface AuthSelectionInput {
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
}

/** The (type, state_key) pairs an event's auth_events may reference, in selection order. */
export function authEventKeys(event: AuthSelectionInput, version: RoomVersion): StateKey[] {
  if (event.type === "m.room.create") return [];
  const keys: StateKey[] = [];
  if (!version.roomIdIsCreateEventHash) keys.push(stateKey("m.room.create", ""));
  keys.push(stateKey("m.room.power_levels", ""));
  keys.push(stateKey("m.room.member", event.sender));
  if (event.type === "m.room.member" && typeof event.state_key === "string") {
    const target = stateKey("m.room.member", event.state_key);
    if (!keys.includes(target)) keys.push(target);
    const membership = event.content.membership;
    if (membership === "join" || membership === "invite" || membership === "knock") {
      keys.push(stateKey("m.room.join_rules", ""));
    }
    const tpi = event.content.third_party_invite;
    if (membership === "invite" && isJsonObject(tpi) && isJsonObject(tpi.signed)) {
      const token = tpi.signed.token;
      if (typeof token === "string") keys.push(stateKey("m.room.third_party_invite", token));
    }
    const via = event.content.join_authorised_via_users_server;
    if (version.restrictedJoinRule && membership === "join" && typeof via === "string") {
      const authoriser = stateKey("m.room.member", via);
      if (!keys.includes(authoriser)) keys.push(authoriser);
    }
  }
  return keys;
}
