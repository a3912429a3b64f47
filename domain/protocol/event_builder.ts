/**
 * Building a local event: pick its prev and auth events, lay it out in the room version's
 * format, add the content hash, sign it and derive its ID. The caller supplies the room's
 * forward extremities and a current-state look-up, so this stays pure apart from the clock.
 */
import { authEventKeys } from "./auth_event_selection.ts";
import { canonicalJsonBytes } from "./canonical_json.ts";
import { badJson, tooLarge } from "../errors.ts";
import { computeEventId, makeServerChosenEventId } from "./event_ids.ts";
import { signEvent } from "./event_signing.ts";
import {
  type EventReferenceTuple,
  type Pdu,
  type RoomEvent,
  type StateKey,
  toRoomEvent,
} from "./events.ts";
import { addContentHash } from "./hashing.ts";
import type { JsonObject } from "./json.ts";
import type { RoomVersion } from "./room_versions.ts";
import type { SigningKey } from "./signing.ts";

/** At most this many prev_events, as the spec's PDU format allows; the newest are kept. */
export const MAX_PREV_EVENTS = 20;

/** The depth ceiling: the spec caps depth at the largest integer canonical JSON can carry. */
export const MAX_EVENT_DEPTH = Number.MAX_SAFE_INTEGER;

/** The largest PDU, in bytes of canonical JSON, that servers accept. */
export const MAX_PDU_BYTES = 65_536;

/** An event this one may point at. `referenceHash` (unpadded base64) fills v1/v2 tuples. */
export interface EventReference {
  eventId: string;
  depth: number;
  referenceHash?: string;
}

/** A current-state entry as the builder needs it. */
export interface CurrentStateEntry {
  eventId: string;
  /** Unpadded base64 reference hash; only v1/v2 rooms use it. */
  referenceHash?: string;
}

/** Everything needed to build one local event. */
export interface BuildEventInput {
  version: RoomVersion;
  /** Undefined only for a v12 create event, whose room ID derives from its own hash. */
  roomId: string | undefined;
  sender: string;
  type: string;
  stateKey?: string;
  content: JsonObject;
  /** For m.room.redaction: the event being redacted. */
  redacts?: string;
  /** The room's forward extremities; empty only for the create event. */
  prevEvents: EventReference[];
  /** The room's current state, looked up by (type, state_key). */
  currentState: (key: StateKey) => CurrentStateEntry | undefined;
  serverName: string;
  signingKey: SigningKey;
  originServerTs?: number;
  unsigned?: JsonObject;
}

/** A built, hashed and signed event with its ID and normalised view. */
export interface BuiltEvent {
  pdu: Pdu;
  eventId: string;
  event: RoomEvent;
}

/** Build, hash and sign a local event in the format of `input.version`. */
export async function buildEvent(input: BuildEventInput): Promise<BuiltEvent> {
  const { version } = input;
  const isCreate = input.type === "m.room.create";
  checkRoomId(input, isCreate);

  const prev = choosePrevEvents(input.prevEvents);
  if (isCreate && prev.length > 0) throw badJson("The create event cannot have prev_events");
  if (!isCreate && prev.length === 0) throw badJson("A non-create event needs prev_events");
  const depth = isCreate ? 1 : Math.min(Math.max(...prev.map((p) => p.depth)) + 1, MAX_EVENT_DEPTH);

  const content: JsonObject = { ...input.content };
  let topLevelRedacts: string | undefined;
  if (input.redacts !== undefined) {
    if (input.type !== "m.room.redaction") {
      throw badJson("Only m.room.redaction events carry redacts");
    }
    // v11 moved `redacts` into content (MSC2174); the v11+ PDU format has no top-level field.
    if (version.redactsInContent) content.redacts = input.redacts;
    else topLevelRedacts = input.redacts;
  }

  const auth = chooseAuthEvents(input, content);

  // `origin` is left out in every version: the spec dropped it from the PDU format (matrix-spec
  // PR 998), nothing reads it, and Synapse stopped sending it too. Adding it to v1-10 events
  // would only sign a redundant field.
  const unsignedPdu: Record<string, unknown> = {};
  if (version.eventIdFormat === "server_chosen") {
    unsignedPdu.event_id = makeServerChosenEventId(input.serverName);
  }
  if (input.roomId !== undefined) unsignedPdu.room_id = input.roomId;
  unsignedPdu.sender = input.sender;
  unsignedPdu.type = input.type;
  if (input.stateKey !== undefined) unsignedPdu.state_key = input.stateKey;
  unsignedPdu.content = content;
  unsignedPdu.origin_server_ts = input.originServerTs ?? Date.now();
  unsignedPdu.depth = depth;
  unsignedPdu.prev_events = eventRefs(prev, version);
  unsignedPdu.auth_events = eventRefs(auth, version);
  if (topLevelRedacts !== undefined) unsignedPdu.redacts = topLevelRedacts;

  const hashed = addContentHash(unsignedPdu as unknown as Pdu, version);
  const signed = await signEvent(
    { ...hashed, signatures: {} },
    version,
    input.serverName,
    input.signingKey,
  );
  const size = canonicalJsonBytes(signed, { strict: version.strictCanonicalJson }).length;
  if (size > MAX_PDU_BYTES) {
    throw tooLarge(`Event is ${size} bytes of canonical JSON; the limit is ${MAX_PDU_BYTES}`);
  }
  const pdu: Pdu = input.unsigned === undefined ? signed : { ...signed, unsigned: input.unsigned };
  const eventId = computeEventId(pdu, version);
  return { pdu, eventId, event: toRoomEvent(pdu, eventId, version) };
}

function checkRoomId(input: BuildEventInput, isCreate: boolean): void {
  const derived = isCreate && input.version.roomIdIsCreateEventHash;
  if (derived && input.roomId !== undefined) {
    throw badJson(`A room version ${input.version.id} create event has no room_id`);
  }
  if (!derived && input.roomId === undefined) throw badJson("The event needs a room_id");
}

// Synapse keeps the deepest extremities when there are too many; ties keep the caller's order.
function choosePrevEvents(extremities: EventReference[]): EventReference[] {
  const seen = new Set<string>();
  const unique = extremities.filter((e) => !seen.has(e.eventId) && seen.add(e.eventId));
  return unique.length <= MAX_PREV_EVENTS
    ? unique
    : [...unique].sort((a, b) => b.depth - a.depth).slice(0, MAX_PREV_EVENTS);
}

function chooseAuthEvents(input: BuildEventInput, content: JsonObject): CurrentStateEntry[] {
  // A membership change is authorised by what it will be, so the NEW content picks the keys.
  const keys = authEventKeys(
    { type: input.type, state_key: input.stateKey, sender: input.sender, content },
    input.version,
  );
  const chosen: CurrentStateEntry[] = [];
  for (const key of keys) {
    const entry = input.currentState(key);
    if (entry !== undefined && !chosen.some((c) => c.eventId === entry.eventId)) chosen.push(entry);
  }
  return chosen;
}

// v1/v2 reference events as [id, {sha256}]; Synapse sends an empty hash object when it has none.
function eventRefs(
  refs: { eventId: string; referenceHash?: string }[],
  version: RoomVersion,
): string[] | EventReferenceTuple[] {
  if (!version.eventRefsAreTuples) return refs.map((r) => r.eventId);
  return refs.map((r): EventReferenceTuple => [
    r.eventId,
    r.referenceHash === undefined ? {} : { sha256: r.referenceHash },
  ]);
}
