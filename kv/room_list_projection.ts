/**
 * The projections sliding sync's room lists read per room (domain/sliding_sync/room_list.ts):
 * the latest event (roomid_activity, what lists are ordered by), the latest bump event
 * (roomid_bump, the rooms' `bump_stamp`) and the create type (roomid_roomtype). Written in the
 * append's commit (kv/batch_writes.ts) so a list of 1,000 rooms reads one small key per room
 * instead of walking each room's log; replay rebuilds them through the same path.
 */
import { BUMP_EVENT_TYPES } from "../domain/sliding_sync/room_list.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import type { PlannedEvent } from "./projections.ts";
import type { EventStoreKeys } from "./schema.ts";
import { FIRST_FORWARD_POSITION } from "./store_records.ts";

/** roomid_bump's and roomid_activity's value: the log position of the room's latest such event. */
export interface RoomBumpRecord {
  position: number;
}

/** roomid_roomtype's value. */
export interface RoomTypeRecord {
  type: string | null;
}

/**
 * The batch's room-list writes: its latest accepted forward event, its latest accepted forward
 * bump event, and the create type.
 * Backfilled events (positions below the first forward one) never bump: they are older than
 * what the room already shows, as in Synapse, which ignores negative stream orderings.
 */
export function roomListWrites(
  keys: EventStoreKeys,
  roomId: string,
  events: Iterable<PlannedEvent>,
): PlannedMutation[] {
  let bump: number | undefined;
  let latest: number | undefined;
  const out: PlannedMutation[] = [];
  for (const planned of events) {
    if (planned.status !== "accepted" || planned.position < FIRST_FORWARD_POSITION) continue;
    if (latest === undefined || planned.position > latest) latest = planned.position;
    const event = planned.event;
    if (!BUMP_EVENT_TYPES.has(event.type)) continue;
    if (bump === undefined || planned.position > bump) bump = planned.position;
    if (event.type === "m.room.create" && event.state_key === "") {
      const type = event.content?.type;
      const value: RoomTypeRecord = { type: typeof type === "string" ? type : null };
      out.push({ op: "set", key: keys.roomType(roomId), value });
    }
  }
  if (latest !== undefined) {
    const value: RoomBumpRecord = { position: latest };
    out.push({ op: "set", key: keys.roomActivity(roomId), value });
  }
  if (bump !== undefined) {
    const value: RoomBumpRecord = { position: bump };
    out.push({ op: "set", key: keys.roomBump(roomId), value });
  }
  return out;
}
