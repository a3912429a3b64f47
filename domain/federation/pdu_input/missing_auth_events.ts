/**
 * Before step 4 can run, the event's auth events must be held. Those we lack come from the
 * server that sent the event: its auth chain first (`/event_auth`, one request), then single
 * events (`/event`) for whatever the chain left out. Each fetched event is checked itself and
 * stored as an outlier (fetched_events.ts), so it is never fetched again.
 */
import type { RoomEvent } from "../../protocol/events.ts";
import { checkPduFormat } from "./format.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";
import { authEventIdsNeeded } from "./auth_events.ts";
import { admitFetchedEvents, type FetchedEventSinks } from "./fetched_events.ts";
import type { RemoteEventSource } from "./remote_events.ts";
import type { HeldEvent } from "./types.ts";

/**
 * The auth events `event` needs (and, in v12, the room's create event), fetching and storing
 * those we lack. IDs nobody could supply are absent from the map.
 */
export async function gatherAuthEvents(
  event: RoomEvent,
  version: RoomVersion,
  sinks: FetchedEventSinks,
  source: RemoteEventSource,
): Promise<Map<string, HeldEvent>> {
  const needed = authEventIdsNeeded(event, version);
  const held = await sinks.held(needed);
  const lacking = () => needed.filter((id) => !held.has(id));
  if (lacking().length === 0) return held;

  const chain = reachableFrom(
    lacking(),
    await source.authChain(event.room_id, event.event_id),
    event.room_id,
    version,
  );
  for (const [id, e] of await admitFetchedEvents(event.room_id, version, chain, sinks)) {
    held.set(id, e);
  }
  if (lacking().length === 0) return held;

  const single = await Promise.all(lacking().map((id) => source.event(id)));
  const fetched = single.filter((pdu) => pdu !== undefined);
  for (const [id, e] of await admitFetchedEvents(event.room_id, version, fetched, sinks)) {
    held.set(id, e);
  }
  return held;
}

/**
 * The events of a sender's `/event_auth` answer that `ids` reach through auth events: the
 * answer is the sender's word, and each event admitted costs a signature check (perhaps a key
 * fetch from the server it names) and an outlier write, so padding it with unrelated events
 * must not buy either.
 */
function reachableFrom(
  ids: readonly string[],
  answer: readonly unknown[],
  roomId: string,
  version: RoomVersion,
): unknown[] {
  const byId = new Map<string, { raw: unknown; cites: string[] }>();
  for (const raw of answer) {
    const format = checkPduFormat(raw, roomId, version);
    if (!format.ok || byId.has(format.value.eventId)) continue;
    byId.set(format.value.eventId, {
      raw,
      cites: authEventIdsNeeded(format.value.event, version),
    });
  }
  const reached = new Set<string>();
  const frontier = ids.filter((id) => byId.has(id));
  while (frontier.length > 0) {
    const id = frontier.pop()!;
    if (reached.has(id)) continue;
    reached.add(id);
    for (const cited of byId.get(id)!.cites) {
      if (byId.has(cited) && !reached.has(cited)) frontier.push(cited);
    }
  }
  return [...reached].map((id) => byId.get(id)!.raw);
}
