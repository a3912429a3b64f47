/**
 * The pure parts of room creation: what each preset sets, and the default power levels for a
 * new room per room version (v12 creators have infinite power and are not listed in `users`).
 */
import type { JsonObject } from "../protocol/json.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";

/** The presets of `POST /createRoom`. */
export type RoomPreset = "private_chat" | "public_chat" | "trusted_private_chat";

/** One state event to send: type, state key and content. */
export interface InitialStateEvent {
  type: string;
  stateKey: string;
  content: JsonObject;
}

/** The join rules, history visibility and guest access a preset sets, in that order. */
export function presetState(preset: RoomPreset): InitialStateEvent[] {
  const isPublic = preset === "public_chat";
  return [
    {
      type: "m.room.join_rules",
      stateKey: "",
      content: { join_rule: isPublic ? "public" : "invite" },
    },
    { type: "m.room.history_visibility", stateKey: "", content: { history_visibility: "shared" } },
    {
      type: "m.room.guest_access",
      stateKey: "",
      content: { guest_access: isPublic ? "forbidden" : "can_join" },
    },
  ];
}

/**
 * Default power levels content. Before v12 the creator gets 100 (and, with
 * trusted_private_chat, so do the invitees); from v12 creators are left out of `users`, and
 * tombstones need more than the state default so admins cannot upgrade the room away.
 */
export function defaultPowerLevels(
  version: RoomVersion,
  creator: string,
  preset: RoomPreset,
  invitees: readonly string[],
): JsonObject {
  const users: JsonObject = {};
  if (!version.privilegedCreators) {
    users[creator] = 100;
    if (preset === "trusted_private_chat") { for (const user of invitees) users[user] = 100; }
  }
  return {
    users,
    users_default: 0,
    events: {
      "m.room.name": 50,
      "m.room.power_levels": 100,
      "m.room.history_visibility": 100,
      "m.room.canonical_alias": 50,
      "m.room.avatar": 50,
      "m.room.tombstone": version.privilegedCreators ? 150 : 100,
      "m.room.server_acl": 100,
      "m.room.encryption": 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 0,
    notifications: { room: 50 },
  };
}
