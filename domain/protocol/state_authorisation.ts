/**
 * The auth rules of one event against a room state given as event IDs: the event store runs it
 * inside append planning for events appended with `checkState` (against the state before the
 * event, then against current state as the commit plans it), so the decision is made on exactly
 * the state the commit lands on. Only the entries the auth event selection names are read.
 */
import { authEventKeys } from "./auth_event_selection.ts";
import { authStateFromEvents, checkEventAuth } from "./auth_rules.ts";
import type { AuthDecision } from "./auth_context.ts";
import { type RoomEvent, stateKey } from "./events.ts";
import type { StateAuthInput } from "../ports/event_store.ts";

/** Whether `input.event` passes the auth rules against `input.state`. */
export async function authoriseAgainstState(input: StateAuthInput): Promise<AuthDecision> {
  const { event, version, state } = input;
  if (event.type === "m.room.create") return checkEventAuth(event, () => undefined, version);
  const keys = authEventKeys(event, version);
  // v12: the create event is not selected (the room ID names it) but the rules still read it.
  const create = stateKey("m.room.create", "");
  if (!keys.includes(create)) keys.push(create);
  const ids = keys.flatMap((key) => {
    const id = state.get(key);
    return id === undefined ? [] : [id];
  });
  const events = (await Promise.all(ids.map((id) => input.getEvent(id))))
    .filter((e): e is RoomEvent => e !== undefined);
  return checkEventAuth(event, authStateFromEvents(events), version);
}
