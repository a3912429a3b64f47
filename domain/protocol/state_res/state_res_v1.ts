/**
 * State resolution v1 (room version 1), as the spec describes it and as Synapse, whose
 * behaviour defines what v1 rooms actually converge on, implements it: power levels, then join
 * rules, then memberships are resolved by walking their conflicts from the oldest event forward;
 * every other conflict takes the deepest event that passes auth.
 */
import { type RoomEvent, type StateKey, stateKey, type StateMap } from "../events.ts";
import { authEventKeys } from "../auth_event_selection.ts";
import { EventCache } from "./event_cache.ts";
import type { CheckAuth, StateResolutionInput } from "./resolution_input.ts";

const POWER_LEVELS = stateKey("m.room.power_levels", "");

/**
 * v1 conflicts: keys whose maps disagree on the event. Unlike v2, a key that some maps lack is
 * not a conflict; the maps that have it agree on its value.
 */
export function separateV1(stateMaps: readonly StateMap[]): {
  unconflicted: StateMap;
  conflicted: Map<StateKey, Set<string>>;
} {
  const values = new Map<StateKey, Set<string>>();
  for (const map of stateMaps) {
    for (const [key, id] of map) {
      const set = values.get(key);
      if (set) set.add(id);
      else values.set(key, new Set([id]));
    }
  }
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<StateKey, Set<string>>();
  for (const [key, ids] of values) {
    if (ids.size === 1) unconflicted.set(key, ids.values().next().value!);
    else conflicted.set(key, ids);
  }
  return { unconflicted, conflicted };
}

async function sha1Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** v1's preference order: greatest depth first, then smallest SHA-1 of the event ID. */
function orderedByDepth(events: RoomEvent[], sha1: Map<string, string>): RoomEvent[] {
  return [...events].sort((a, b) => {
    const depthA = a.depth ?? 0;
    const depthB = b.depth ?? 0;
    if (depthA !== depthB) return depthB - depthA;
    const ha = sha1.get(a.event_id)!;
    const hb = sha1.get(b.event_id)!;
    return ha < hb ? -1 : ha > hb ? 1 : 0;
  });
}

/** Resolve `input.stateMaps` with the room version 1 algorithm. */
export async function resolveStateV1(
  input: StateResolutionInput,
  checkAuth: CheckAuth,
): Promise<StateMap> {
  const { version, stateMaps } = input;
  if (stateMaps.length === 0) return new Map();
  if (stateMaps.length === 1) return new Map(stateMaps[0]);
  const { unconflicted, conflicted } = separateV1(stateMaps);
  const events = new EventCache(input.getEvent);

  const present = new Map<StateKey, RoomEvent[]>();
  for (const [key, ids] of conflicted) {
    const found = (await events.getMany(ids)).filter((e): e is RoomEvent => e !== undefined);
    present.set(key, found);
  }

  // Auth events come only from the unconflicted state, for the keys the conflicted events need.
  const authState = new Map<StateKey, RoomEvent>();
  for (const found of present.values()) {
    for (const event of found) {
      for (const key of authEventKeys(event, version)) {
        const id = unconflicted.get(key);
        if (id === undefined || authState.has(key)) continue;
        const authEvent = await events.get(id);
        if (authEvent) authState.set(key, authEvent);
      }
    }
  }

  // A conflict with one fetchable event is no conflict; one with none drops the key.
  const resolved: StateMap = new Map(unconflicted);
  const contested = new Map<StateKey, RoomEvent[]>();
  const sha1 = new Map<string, string>();
  for (const [key, found] of present) {
    if (found.length === 1) resolved.set(key, found[0].event_id);
    if (found.length < 2) continue;
    contested.set(key, found);
    for (const event of found) sha1.set(event.event_id, await sha1Hex(event.event_id));
  }

  const allowed = (event: RoomEvent, state: Map<StateKey, RoomEvent>) =>
    checkAuth(event, (key) => state.get(key), version).allowed;

  // Oldest first; each event must be allowed by the state holding the one before it.
  const resolveAuthConflict = (found: RoomEvent[]): RoomEvent => {
    const oldestFirst = orderedByDepth(found, sha1).reverse();
    const state = new Map<StateKey, RoomEvent>();
    for (const event of found) {
      for (const key of authEventKeys(event, version)) {
        const authEvent = authState.get(key);
        if (authEvent) state.set(key, authEvent);
      }
    }
    let previous = oldestFirst[0];
    for (const event of oldestFirst.slice(1)) {
      state.set(stateKey(previous.type, previous.state_key ?? ""), previous);
      if (!allowed(event, state)) return previous;
      previous = event;
    }
    return previous;
  };

  const chosen = new Map<StateKey, RoomEvent>();
  const phase = (select: (key: StateKey) => boolean) => {
    for (const [key, found] of contested) {
      if (select(key)) chosen.set(key, resolveAuthConflict(found));
    }
    // Later phases see this phase's choices, but keys within a phase do not see each other.
    for (const [key, event] of chosen) authState.set(key, event);
  };
  phase((key) => key === POWER_LEVELS);
  phase((key) => key.startsWith("m.room.join_rules\u0000"));
  phase((key) => key.startsWith("m.room.member\u0000"));

  for (const [key, found] of contested) {
    if (chosen.has(key)) continue;
    const preferred = orderedByDepth(found, sha1);
    // If nothing passes, the shallowest event stands.
    chosen.set(key, preferred.find((e) => allowed(e, authState)) ?? preferred.at(-1)!);
  }
  for (const [key, event] of chosen) resolved.set(key, event.event_id);
  return resolved;
}
