/** Power events and sender power for state resolution v2's reverse topological power ordering. */
import { userPowerLevel } from "../power_levels.ts";
import type { RoomEvent } from "../events.ts";
import type { RoomVersion } from "../room_versions.ts";
import type { EventCache } from "./event_cache.ts";

/**
 * A power event: power levels or join rules, or a member event kicking or banning someone
 * else. Like Synapse and ruma we require the empty state_key on power levels and join rules,
 * the only keys the auth rules ever read; the create event counts too (it is never conflicted).
 */
export function isPowerEvent(event: RoomEvent): boolean {
  switch (event.type) {
    case "m.room.power_levels":
    case "m.room.join_rules":
    case "m.room.create":
      return event.state_key === "";
    case "m.room.member": {
      const membership = event.content.membership;
      return (membership === "leave" || membership === "ban") &&
        typeof event.state_key === "string" && event.state_key !== event.sender;
    }
    default:
      return false;
  }
}

/** The create event's ID in v12 rooms, where the room ID is `!` + the create event ID body. */
export function createEventIdFromRoomId(roomId: string): string {
  return `$${roomId.slice(1)}`;
}

/**
 * The power of an event's sender as its own auth events describe it (not the resolved state),
 * per domain/power_levels.ts: Infinity for v12 creators, the cited power levels, else 100 for a
 * v1-11 creator. The events read must already be in `events` (see `prefetchSenderPowerInputs`).
 */
export function senderPowerLevel(
  event: RoomEvent,
  events: EventCache,
  version: RoomVersion,
): number {
  let powerLevels: RoomEvent | undefined;
  let create: RoomEvent | undefined;
  for (const authId of event.auth_events) {
    const auth = events.peek(authId);
    if (!auth || auth.state_key !== "") continue;
    if (auth.type === "m.room.power_levels") powerLevels ??= auth;
    if (auth.type === "m.room.create") create ??= auth;
  }
  if (version.roomIdIsCreateEventHash) {
    create = events.peek(createEventIdFromRoomId(event.room_id));
  }
  return userPowerLevel(event.sender, powerLevels, create, version);
}

/** Fetch what `senderPowerLevel` reads for these events: their auth events and v12 create. */
export async function prefetchSenderPowerInputs(
  evs: RoomEvent[],
  events: EventCache,
  version: RoomVersion,
): Promise<void> {
  const ids = new Set<string>();
  for (const event of evs) {
    for (const authId of event.auth_events) ids.add(authId);
    if (version.roomIdIsCreateEventHash) ids.add(createEventIdFromRoomId(event.room_id));
  }
  await events.getMany(ids);
}
