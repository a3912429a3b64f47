/**
 * Mainline ordering (state resolution v2, step 3): events are ordered by how far back along the
 * resolved power levels' chain of power levels events their own power levels ancestry joins it.
 */
import type { RoomEvent } from "../events.ts";
import type { EventCache } from "./event_cache.ts";

/** The power levels event an event cites in its auth_events, if any. */
async function citedPowerLevels(event: RoomEvent, events: EventCache): Promise<string | undefined> {
  const cited = await events.getMany(event.auth_events);
  return cited.find((e) => e?.type === "m.room.power_levels" && e.state_key === "")?.event_id;
}

/** The mainline of a power levels event: [P0, P1, …, Pn], each citing the next. */
export async function mainlineOf(powerLevelsId: string, events: EventCache): Promise<string[]> {
  const mainline: string[] = [];
  const seen = new Set<string>();
  let id: string | undefined = powerLevelsId;
  // `seen` guards against a malicious cycle of power levels events.
  while (id !== undefined && !seen.has(id)) {
    seen.add(id);
    const event = await events.get(id);
    if (!event) break;
    mainline.push(id);
    id = await citedPowerLevels(event, events);
  }
  return mainline;
}

/**
 * The mainline position of `event`: the index in `mainline` of the first power levels event met
 * walking its power levels ancestry (the event itself excluded), or Infinity if none is met.
 * `memo` caches positions of power levels events across calls for one mainline.
 */
export async function mainlinePosition(
  event: RoomEvent,
  mainlineIndex: ReadonlyMap<string, number>,
  events: EventCache,
  memo: Map<string, number> = new Map(),
): Promise<number> {
  const walked: string[] = [];
  let position = Infinity;
  let id = await citedPowerLevels(event, events);
  while (id !== undefined) {
    const known = mainlineIndex.get(id) ?? memo.get(id);
    if (known !== undefined) {
      position = known;
      break;
    }
    if (walked.includes(id)) break;
    walked.push(id);
    const powerLevels = await events.get(id);
    if (!powerLevels) break;
    id = await citedPowerLevels(powerLevels, events);
  }
  for (const step of walked) memo.set(step, position);
  return position;
}

/**
 * Sort events by mainline ordering based on `powerLevelsId` (the resolved power levels so far):
 * larger position first, then smaller origin_server_ts, then smaller event ID. Events that
 * cannot be fetched are left out.
 */
export async function mainlineOrder(
  ids: Iterable<string>,
  powerLevelsId: string | undefined,
  events: EventCache,
): Promise<string[]> {
  const mainline = powerLevelsId === undefined ? [] : await mainlineOf(powerLevelsId, events);
  const mainlineIndex = new Map(mainline.map((id, i) => [id, i]));
  const memo = new Map<string, number>();
  const keyed: { id: string; position: number; ts: number }[] = [];
  for (const event of await events.getMany(new Set(ids))) {
    if (!event) continue;
    const position = await mainlinePosition(event, mainlineIndex, events, memo);
    keyed.push({ id: event.event_id, position, ts: event.origin_server_ts });
  }
  keyed.sort((a, b) => {
    if (a.position !== b.position) return a.position > b.position ? -1 : 1;
    if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  return keyed.map((k) => k.id);
}
