/**
 * The iterative auth checks of state resolution v2: apply sorted state events one by one to a
 * state, keeping only those the auth rules allow against the state built so far.
 */
import { type RoomEvent, type StateKey, stateKey, type StateMap } from "../events.ts";
import { authEventKeys } from "../auth_event_selection.ts";
import type { RoomVersion } from "../room_versions.ts";
import type { EventCache } from "./event_cache.ts";
import { createEventIdFromRoomId } from "./power_events.ts";
import type { CheckAuth } from "./resolution_input.ts";

/** What the iterative auth checks need besides the events and the starting state. */
export interface AuthCheckContext {
  version: RoomVersion;
  events: EventCache;
  checkAuth: CheckAuth;
  isRejected: (id: string) => boolean;
}

/**
 * The state an event is checked against: its own (non-rejected) auth events, overridden for
 * every key the auth rules select by the entry in `state`. In v12 the create event is implied by
 * the room ID rather than cited, so it is added from there.
 */
export async function authStateFor(
  event: RoomEvent,
  state: StateMap,
  ctx: AuthCheckContext,
): Promise<Map<StateKey, RoomEvent>> {
  const authState = new Map<StateKey, RoomEvent>();
  for (const auth of await ctx.events.getMany(event.auth_events)) {
    if (!auth || auth.state_key === undefined || ctx.isRejected(auth.event_id)) continue;
    authState.set(stateKey(auth.type, auth.state_key), auth);
  }
  if (ctx.version.roomIdIsCreateEventHash && event.type !== "m.room.create") {
    const create = await ctx.events.get(createEventIdFromRoomId(event.room_id));
    if (create) authState.set(stateKey("m.room.create", ""), create);
  }
  for (const key of authEventKeys(event, ctx.version)) {
    const id = state.get(key);
    if (id === undefined || ctx.isRejected(id)) continue;
    const current = await ctx.events.get(id);
    if (current) authState.set(key, current);
  }
  return authState;
}

/**
 * Apply `ids` in order to a copy of `initial`; an event enters the state only if the auth rules
 * allow it. Events that cannot be fetched, or are not state events, are skipped.
 */
export async function iterativeAuthChecks(
  ids: readonly string[],
  initial: StateMap,
  ctx: AuthCheckContext,
): Promise<StateMap> {
  const state: StateMap = new Map(initial);
  for (const id of ids) {
    const event = await ctx.events.get(id);
    if (!event || event.state_key === undefined) continue;
    const authState = await authStateFor(event, state, ctx);
    const decision = ctx.checkAuth(event, (key) => authState.get(key), ctx.version);
    if (decision.allowed) state.set(stateKey(event.type, event.state_key), id);
  }
  return state;
}
