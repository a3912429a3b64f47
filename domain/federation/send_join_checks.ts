/**
 * Checking a `send_join` answer before any of it is stored (server-server spec "Joining Rooms":
 * the joining server must check the returned state and auth chain like any other PDUs). Pure
 * apart from the injected signature verifier: every event of `state` and `auth_chain` must be
 * well-formed, in the room, signed by the servers its room version requires, carry the right
 * content hash (an event whose hash does not match is redacted, as the spec says for any PDU),
 * and pass the auth rules against its own auth events, which must themselves be in the answer
 * and pass. The create event must name the room version the join was made in, and the join
 * event as returned must be ours (a restricted join comes back co-signed by the resident
 * server), authorised by the state before it.
 *
 * Any failure refuses the whole answer: a resident server answering honestly never sends an
 * event that fails these checks (state resolution only ever picks events that passed auth), so a
 * failure means the answer cannot be trusted, and the caller tries the next server.
 */
import { authStateFromEvents, checkAuthEventsList, checkEventAuth } from "../auth_rules.ts";
import { canonicalJson } from "../canonical_json.ts";
import {
  type Pdu,
  type RoomEvent,
  roomIdFromCreateEventId,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../events.ts";
import { checkContentHash } from "../hashing.ts";
import { isJsonObject, type JsonValue } from "../json.ts";
import { redactEvent } from "../redaction.ts";
import type { RoomVersion } from "../room_versions.ts";
import { checkPduFormat } from "./pdu_input/format.ts";

/** Checks the signatures an event needs in its room version (part 2's verifyEventSignatures). */
export type EventSignatureVerifier = (
  pdu: Pdu,
  version: RoomVersion,
) => Promise<{ ok: true } | { ok: false; reason: string }>;

/** One checked event of the answer, with its ID and normalised view. */
export interface CheckedEvent {
  eventId: string;
  /** The PDU as it will be stored: redacted when its content hash did not match. */
  pdu: Pdu;
  event: RoomEvent;
}

/** A `send_join` answer that passed every check. */
export interface CheckedJoinAnswer {
  /** Every event of `state` and `auth_chain`, by ID, each once. */
  events: Map<string, CheckedEvent>;
  /** The state before the join event, from `state`. */
  stateBefore: StateMap;
  /** The join event to append: ours, with the resident server's co-signature when it added one. */
  join: CheckedEvent;
  /** `servers_in_room` when the resident server sent it (used to pick backfill sources). */
  serversInRoom: string[];
}

/** What to check an answer against. */
export interface SendJoinCheckInput {
  roomId: string;
  version: RoomVersion;
  /** Our join event, as we built and signed it from the make_join template. */
  ownJoin: { eventId: string; pdu: Pdu };
  /** Our server name: our signature on the join must come back untouched. */
  serverName: string;
  /** The response body (v2 object, or the v1 `[200, body]` pair). */
  answer: JsonValue | null;
  verifySignatures: EventSignatureVerifier;
}

/** Why an answer was refused. */
export class SendJoinAnswerRefused extends Error {
  /** `reason` names the failing event when there is one. */
  constructor(reason: string) {
    super(reason);
    this.name = "SendJoinAnswerRefused";
  }
}

/** Check a `send_join` answer; throws SendJoinAnswerRefused when any check fails. */
export async function checkSendJoinAnswer(input: SendJoinCheckInput): Promise<CheckedJoinAnswer> {
  const { version, roomId } = input;
  const body = unwrapV1(input.answer);
  if (!isJsonObject(body)) throw new SendJoinAnswerRefused("the answer is not a JSON object");
  const stateList = pduList(body.state, "state");
  const chainList = pduList(body.auth_chain, "auth_chain");

  const events = new Map<string, CheckedEvent>();
  const stateIds: string[] = [];
  for (const [list, isState] of [[stateList, true], [chainList, false]] as const) {
    for (const raw of list) {
      const checked = parseEvent(raw, roomId, version);
      const seen = events.get(checked.eventId);
      if (seen === undefined) events.set(checked.eventId, checked);
      if (isState) stateIds.push(checked.eventId);
    }
  }

  // Signatures: in parallel, since each verification is independent and may fetch a key.
  const results = await Promise.all(
    [...events.values()].map(async (e) =>
      [e, await input.verifySignatures(e.pdu, version)] as const
    ),
  );
  for (const [e, result] of results) {
    if (!result.ok) throw refused(e.eventId, `bad signature: ${result.reason}`);
  }

  // Content hashes: a mismatch means the content was altered after signing; keep the redacted
  // form, which the signature (just verified over it) vouches for.
  for (const e of events.values()) {
    if (!checkContentHash(e.pdu, version)) {
      const pdu = redactEvent(e.pdu, version) as Pdu;
      e.pdu = pdu;
      e.event = toRoomEvent(pdu, e.eventId, version);
    }
  }

  const stateBefore = stateMapOf(stateIds, events);
  const create = createEventOf(stateBefore, events, roomId, version);
  authoriseAll(events, create, version);

  const join = await checkJoin(input, body.event, events, stateBefore, create);
  const servers = Array.isArray(body.servers_in_room)
    ? body.servers_in_room.filter((s): s is string => typeof s === "string")
    : [];
  return { events, stateBefore, join, serversInRoom: servers };
}

function refused(eventId: string, reason: string): SendJoinAnswerRefused {
  return new SendJoinAnswerRefused(`${eventId}: ${reason}`);
}

// send_join v1 answers `[200, {...}]` (a Synapse-era quirk the spec kept).
function unwrapV1(answer: JsonValue | null): JsonValue | null {
  if (Array.isArray(answer) && answer.length === 2 && answer[0] === 200) return answer[1];
  return answer;
}

function pduList(value: JsonValue | undefined, field: string): JsonValue[] {
  if (!Array.isArray(value)) throw new SendJoinAnswerRefused(`${field} is not a list`);
  return value;
}

/** Shape, size and room of one PDU, and its event ID: the incoming-PDU format check. */
function parseEvent(raw: JsonValue, roomId: string, version: RoomVersion): CheckedEvent {
  const checked = checkPduFormat(raw, roomId, version);
  if (!checked.ok) throw refused(checked.eventId || "an event", checked.reason);
  return checked.value;
}

function stateMapOf(ids: string[], events: Map<string, CheckedEvent>): StateMap {
  const state: StateMap = new Map();
  for (const id of ids) {
    const { event } = events.get(id)!;
    if (event.state_key === undefined) throw refused(id, "a non-state event in the state");
    const key = stateKey(event.type, event.state_key);
    if (state.has(key) && state.get(key) !== id) {
      throw refused(id, `two events for (${event.type}, ${event.state_key}) in the state`);
    }
    state.set(key, id);
  }
  return state;
}

/** The room's create event, which must be in the state and name the version we joined with. */
function createEventOf(
  state: StateMap,
  events: Map<string, CheckedEvent>,
  roomId: string,
  version: RoomVersion,
): RoomEvent {
  const id = state.get(stateKey("m.room.create", ""));
  if (id === undefined) throw new SendJoinAnswerRefused("no m.room.create event in the state");
  const create = events.get(id)!.event;
  const claimed = create.content.room_version ?? "1";
  if (claimed !== version.id) {
    throw refused(id, `the room is version ${JSON.stringify(claimed)}, not ${version.id}`);
  }
  if (version.roomIdIsCreateEventHash && roomIdFromCreateEventId(id) !== roomId) {
    throw refused(id, `the create event of another room`);
  }
  return create;
}

/**
 * Every event against its own auth events, auth events first. Iterative (a hostile answer may
 * chain thousands of events), and a cycle in auth_events is a refusal.
 */
function authoriseAll(
  events: Map<string, CheckedEvent>,
  create: RoomEvent,
  version: RoomVersion,
): void {
  const done = new Set<string>();
  const onPath = new Set<string>();
  const options = { createEvent: create };
  for (const start of events.keys()) {
    if (done.has(start)) continue;
    const stack: { id: string; expanded: boolean }[] = [{ id: start, expanded: false }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const { event } = events.get(top.id)!;
      if (!top.expanded) {
        top.expanded = true;
        onPath.add(top.id);
        for (const authId of event.auth_events) {
          if (done.has(authId)) continue;
          if (onPath.has(authId)) throw refused(top.id, "auth_events form a cycle");
          if (!events.has(authId)) throw refused(top.id, `auth event ${authId} is missing`);
          stack.push({ id: authId, expanded: false });
        }
        continue;
      }
      stack.pop();
      onPath.delete(top.id);
      if (done.has(top.id)) continue;
      const authEvents = event.auth_events.map((id) => events.get(id)!.event);
      const list = checkAuthEventsList(event, authEvents, version);
      if (!list.allowed) throw refused(top.id, `fails auth: ${list.reason}`);
      const decision = checkEventAuth(event, authStateFromEvents(authEvents), version, options);
      if (!decision.allowed) throw refused(top.id, `fails auth: ${decision.reason}`);
      done.add(top.id);
    }
  }
}

/**
 * The join as returned must be ours: the same event (all but signatures), our signature intact;
 * the resident server may have added its own (restricted joins). It must pass auth against its
 * auth events (all in the answer) and against the state before it.
 */
async function checkJoin(
  input: SendJoinCheckInput,
  returned: JsonValue | undefined,
  events: Map<string, CheckedEvent>,
  stateBefore: StateMap,
  create: RoomEvent,
): Promise<CheckedEvent> {
  const { version, ownJoin, serverName } = input;
  let pdu = ownJoin.pdu;
  if (returned !== undefined && returned !== null) {
    if (!isJsonObject(returned)) {
      throw refused(ownJoin.eventId, "the returned join is not an object");
    }
    const theirs = { ...returned } as unknown as Pdu;
    delete theirs.unsigned;
    if (withoutSignatures(theirs, version) !== withoutSignatures(ownJoin.pdu, version)) {
      throw refused(ownJoin.eventId, "the returned join is not the event we sent");
    }
    const signatures = isJsonObject(theirs.signatures) ? theirs.signatures : {};
    if (
      canonicalJson(signatures[serverName] ?? null) !==
        canonicalJson(ownJoin.pdu.signatures[serverName])
    ) {
      throw refused(ownJoin.eventId, "our signature on the returned join was changed");
    }
    pdu = { ...ownJoin.pdu, signatures: theirs.signatures };
  }
  // Ours alone is not enough for a restricted join: the authorising server must have signed.
  const verified = await input.verifySignatures(pdu, version);
  if (!verified.ok) throw refused(ownJoin.eventId, `bad signature: ${verified.reason}`);
  const event = toRoomEvent(pdu, ownJoin.eventId, version);
  const authEvents = event.auth_events.map((id) => {
    const found = events.get(id);
    if (found === undefined) throw refused(ownJoin.eventId, `auth event ${id} is missing`);
    return found.event;
  });
  const options = { createEvent: create };
  const list = checkAuthEventsList(event, authEvents, version);
  if (!list.allowed) throw refused(ownJoin.eventId, `join fails auth: ${list.reason}`);
  const own = checkEventAuth(event, authStateFromEvents(authEvents), version, options);
  if (!own.allowed) throw refused(ownJoin.eventId, `join fails auth: ${own.reason}`);
  const before = checkEventAuth(
    event,
    (key) => {
      const id = stateBefore.get(key);
      return id === undefined ? undefined : events.get(id)?.event;
    },
    version,
    options,
  );
  if (!before.allowed) {
    throw refused(ownJoin.eventId, `join fails auth against the room's state: ${before.reason}`);
  }
  return { eventId: ownJoin.eventId, pdu, event };
}

function withoutSignatures(pdu: Pdu, version: RoomVersion): string {
  const { signatures: _s, unsigned: _u, ...rest } = pdu;
  return canonicalJson(rest, { strict: version.strictCanonicalJson });
}
