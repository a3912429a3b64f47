/**
 * A dry run of a room creation: build and authorise every planned event in memory, exactly as
 * the local event sender will, before anything is written. `POST /createRoom` writes its events
 * in several commits (the create event first, then the rest), so a request refused halfway
 * (power levels the auth rules reject, a string with a lone surrogate, an event over the size
 * limit) used to leave a half-made room behind, sometimes already published with its alias.
 */
import { authStateFromEvents, checkEventAuth } from "../protocol/auth_rules.ts";
import { MatrixError } from "../errors.ts";
import { buildEvent, type EventReference } from "../protocol/event_builder.ts";
import { type RoomEvent, type StateKey, stateKey } from "../protocol/events.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import { generateSigningSeed, type SigningKey, signingKeyFromSeed } from "../protocol/signing.ts";
import type { InitialStateEvent } from "./room_presets.ts";

/**
 * A throwaway key for dry runs. Its ID has the length of the server's own (`ed25519:t` and 8
 * hex digits, see server_keys.ts) and the room ID below that of a real one, so a built event
 * has the byte size the real one will have and the size limit is judged exactly.
 */
let dryRunKey: Promise<SigningKey> | undefined;
const DRY_RUN_KEY_ID = "ed25519:t00000000";

/** What a creation dry run needs: the plan's create content and events, in sending order. */
export interface RoomCreationDryRun {
  version: RoomVersion;
  creator: string;
  serverName: string;
  createContent: JsonObject;
  events: InitialStateEvent[];
  now: number;
}

/**
 * Throw the error the real sends would meet, if any: M_INVALID_ROOM_STATE when the auth rules
 * refuse an event, M_BAD_JSON for content without a canonical form, M_TOO_LARGE for an event
 * over 65,536 bytes. Resolves when every event would be accepted.
 */
export async function checkRoomCreation(run: RoomCreationDryRun): Promise<void> {
  const { version, creator, serverName } = run;
  dryRunKey ??= signingKeyFromSeed(generateSigningSeed(), DRY_RUN_KEY_ID);
  const signingKey = await dryRunKey;
  const content: JsonObject = { ...run.createContent, room_version: version.id };
  if (version.createHasCreatorField) content.creator = creator;
  const create = await buildEvent({
    version,
    // The length of a real room ID (see LocalEventSender: 12 opaque characters).
    roomId: version.roomIdIsCreateEventHash ? undefined : `!${"x".repeat(12)}:${serverName}`,
    sender: creator,
    type: "m.room.create",
    stateKey: "",
    content,
    prevEvents: [],
    currentState: () => undefined,
    serverName,
    signingKey,
    originServerTs: run.now,
  });
  refuseUnless(checkEventAuth(create.event, () => undefined, version), "m.room.create");

  const state = new Map<StateKey, RoomEvent>([[stateKey("m.room.create", ""), create.event]]);
  const byId = new Map<string, RoomEvent>([[create.eventId, create.event]]);
  let prev: EventReference = { eventId: create.eventId, depth: create.pdu.depth };
  for (const planned of run.events) {
    const built = await buildEvent({
      version,
      roomId: create.event.room_id,
      sender: creator,
      type: planned.type,
      stateKey: planned.stateKey,
      content: planned.content,
      prevEvents: [prev],
      currentState: (key) => {
        const event = state.get(key);
        return event ? { eventId: event.event_id } : undefined;
      },
      serverName,
      signingKey,
      originServerTs: run.now,
    });
    const authEvents = built.event.auth_events.flatMap((id) => byId.get(id) ?? []);
    refuseUnless(
      checkEventAuth(built.event, authStateFromEvents(authEvents), version, {
        createEvent: create.event,
      }),
      planned.type,
    );
    state.set(stateKey(planned.type, planned.stateKey), built.event);
    byId.set(built.eventId, built.event);
    prev = { eventId: built.eventId, depth: built.pdu.depth };
  }
}

function refuseUnless(decision: { allowed: boolean; reason?: string }, type: string): void {
  if (decision.allowed) return;
  throw new MatrixError(
    "M_INVALID_ROOM_STATE",
    400,
    `The room's ${type} event would be refused: ${decision.reason}`,
  );
}
