/**
 * Step 1 of the checks on receipt of a PDU: is it a valid event of its room version at all?
 * A PDU failing here is dropped (never stored): it has the fields the version's PDU format
 * requires with the right types, fits 65,536 bytes of canonical JSON, references events in the
 * version's format, and its event ID is computed (v3+) or carried in the right shape (v1/v2).
 */
import { canonicalJsonBytes } from "../../protocol/canonical_json.ts";
import { MAX_PDU_BYTES } from "../../protocol/event_builder.ts";
import { computeEventId, eventIdMatchesFormat } from "../../protocol/event_ids.ts";
import {
  type Pdu,
  type RoomEvent,
  roomIdFromCreateEventId,
  toRoomEvent,
} from "../../protocol/events.ts";
import { isValidRoomId, isValidUserId } from "../../protocol/identifiers.ts";
import { isJsonObject } from "../../protocol/json.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";

/** At most this many prev_events in a PDU (the spec's PDU format). */
export const MAX_PDU_PREV_EVENTS = 20;
/** At most this many auth_events in a PDU (the spec's PDU format). */
export const MAX_PDU_AUTH_EVENTS = 10;
/** Identifiers and types in an event: at most 255 bytes (the spec's size limits). */
const MAX_ID_BYTES = 255;

/** A PDU that passed the format check: its ID, typed PDU and normalised view. */
export interface WellFormedPdu {
  eventId: string;
  pdu: Pdu;
  event: RoomEvent;
}

/** The outcome of the format check. */
export type FormatCheck = { ok: true; value: WellFormedPdu } | {
  ok: false;
  /** The event ID when one could be named (for the per-PDU result), else "". */
  eventId: string;
  reason: string;
};

const encoder = new TextEncoder();

/**
 * Check `raw` against `version`'s PDU format for `roomId` and name it. `unsigned` is dropped from
 * the returned PDU: it is the sender's annotation, not part of the event, and an accepted event
 * gets our own.
 */
export function checkPduFormat(raw: unknown, roomId: string, version: RoomVersion): FormatCheck {
  const fail = (reason: string, eventId = ""): FormatCheck => ({ ok: false, eventId, reason });
  if (!isJsonObject(raw)) return fail("the PDU is not a JSON object");
  let size: number;
  try {
    size = canonicalJsonBytes(raw, { strict: version.strictCanonicalJson }).length;
  } catch (error) {
    return fail(`the PDU is not canonical JSON: ${(error as Error).message}`);
  }
  if (size > MAX_PDU_BYTES) return fail(`the PDU is ${size} bytes, over ${MAX_PDU_BYTES}`);

  const problem = fieldProblem(raw, roomId, version);
  if (problem) return fail(problem, nameOf(raw, version));

  const { unsigned: _unsigned, ...rest } = raw;
  const pdu = rest as unknown as Pdu;
  let eventId: string;
  try {
    eventId = computeEventId(pdu, version);
  } catch (error) {
    return fail(`the event ID cannot be computed: ${(error as Error).message}`);
  }
  if (!eventIdMatchesFormat(eventId, version)) {
    return fail(`the event ID does not have room version ${version.id}'s format`, eventId);
  }
  if (version.roomIdIsCreateEventHash && pdu.type === "m.room.create") {
    if (roomIdFromCreateEventId(eventId) !== roomId) {
      return fail(`the create event is not the one ${roomId} is named after`, eventId);
    }
  }
  return { ok: true, value: { eventId, pdu, event: toRoomEvent(pdu, eventId, version) } };
}

/**
 * The best name for a PDU that failed its checks (or was refused unchecked), so the sender
 * sees which one failed: its event ID under `version`, or "" when none can be computed.
 */
export function nameOf(raw: unknown, version: RoomVersion): string {
  if (!isJsonObject(raw)) return "";
  try {
    const id = computeEventId(raw as unknown as Pdu, version);
    return eventIdMatchesFormat(id, version) ? id : "";
  } catch {
    return "";
  }
}

function fieldProblem(
  raw: Record<string, unknown>,
  roomId: string,
  version: RoomVersion,
): string | undefined {
  const isCreate = raw.type === "m.room.create";
  if (version.roomIdIsCreateEventHash && isCreate) {
    if (raw.room_id !== undefined) return "a create event of this room version has no room_id";
  } else {
    if (typeof raw.room_id !== "string") return "room_id is missing or not a string";
    if (raw.room_id !== roomId) return `room_id is not ${roomId}`;
    if (!isValidRoomId(raw.room_id)) return "room_id is not a valid room ID";
  }
  if (typeof raw.sender !== "string" || !isValidUserId(raw.sender)) {
    return "sender is missing or not a valid user ID";
  }
  if (typeof raw.type !== "string" || raw.type === "") return "type is missing or empty";
  for (const key of ["sender", "type", "state_key", "room_id"] as const) {
    const value = raw[key];
    if (typeof value === "string" && encoder.encode(value).length > MAX_ID_BYTES) {
      return `${key} is over ${MAX_ID_BYTES} bytes`;
    }
  }
  if (raw.state_key !== undefined && typeof raw.state_key !== "string") {
    return "state_key is not a string";
  }
  if (!isJsonObject(raw.content)) return "content is missing or not an object";
  if (!isCanonicalInteger(raw.origin_server_ts)) return "origin_server_ts is not an integer";
  if (!isCanonicalInteger(raw.depth) || (raw.depth as number) < 0) {
    return "depth is not a non-negative integer";
  }
  if (!isJsonObject(raw.hashes) || typeof raw.hashes.sha256 !== "string") {
    return "hashes.sha256 is missing";
  }
  if (!isJsonObject(raw.signatures)) return "signatures is missing or not an object";
  for (const byServer of Object.values(raw.signatures)) {
    if (!isJsonObject(byServer) || Object.values(byServer).some((s) => typeof s !== "string")) {
      return "signatures is not a map of servers to key IDs to signatures";
    }
  }
  if (raw.unsigned !== undefined && !isJsonObject(raw.unsigned)) return "unsigned is not an object";
  const prev = referenceProblem(raw.prev_events, "prev_events", MAX_PDU_PREV_EVENTS, version);
  if (prev) return prev;
  const auth = referenceProblem(raw.auth_events, "auth_events", MAX_PDU_AUTH_EVENTS, version);
  if (auth) return auth;
  if (isCreate && (raw.prev_events as unknown[]).length > 0) {
    return "a create event has no prev_events";
  }
  if (!isCreate && (raw.prev_events as unknown[]).length === 0) {
    return "prev_events is empty";
  }
  if (version.eventIdFormat === "server_chosen" && typeof raw.event_id !== "string") {
    return "event_id is missing";
  }
  if (raw.type === "m.room.redaction" && !version.redactsInContent) {
    if (typeof raw.redacts !== "string") return "a redaction has no redacts";
  }
  return undefined;
}

/** prev_events/auth_events: a bounded list of IDs (v3+) or `[id, {sha256}]` tuples (v1/v2). */
function referenceProblem(
  value: unknown,
  name: string,
  max: number,
  version: RoomVersion,
): string | undefined {
  if (!Array.isArray(value)) return `${name} is missing or not a list`;
  if (value.length > max) return `${name} lists ${value.length} events, over ${max}`;
  for (const ref of value) {
    let id: unknown = ref;
    if (version.eventRefsAreTuples) {
      if (!Array.isArray(ref) || ref.length < 1 || (ref.length > 1 && !isJsonObject(ref[1]))) {
        return `${name} holds an entry that is not [event_id, {hashes}]`;
      }
      id = ref[0];
    }
    if (typeof id !== "string" || !eventIdMatchesFormat(id, version)) {
      return `${name} holds an event ID not in room version ${version.id}'s format`;
    }
  }
  return undefined;
}

function isCanonicalInteger(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value);
}
