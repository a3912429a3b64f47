/** Small builders for hand-made events in the state resolution unit tests. */
import type { RoomEvent } from "../../../../domain/protocol/events.ts";
import { EventCache } from "../../../../domain/protocol/state_res/event_cache.ts";

/** A state event with sensible defaults; override what the test cares about. */
export function ev(id: string, fields: Partial<RoomEvent> = {}): RoomEvent {
  return {
    event_id: id,
    room_id: "!room:example.com",
    sender: "@alice:example.com",
    type: "m.room.topic",
    state_key: "",
    content: {},
    origin_server_ts: 0,
    prev_events: [],
    auth_events: [],
    ...fields,
  };
}

/** An EventCache over a fixed list of events, counting storage reads per ID. */
export function cacheOf(events: RoomEvent[]): { cache: EventCache; reads: Map<string, number> } {
  const byId = new Map(events.map((e) => [e.event_id, e]));
  const reads = new Map<string, number>();
  const cache = new EventCache((id) => {
    reads.set(id, (reads.get(id) ?? 0) + 1);
    return Promise.resolve(byId.get(id));
  });
  return { cache, reads };
}
