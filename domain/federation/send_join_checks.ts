/**
 * Checking a `send_join` answer before any of it is stored (server-server spec "Joining Rooms":
 * the joining server must check the returned state and auth chain like any other PDUs). Pure
 * apart from the injected signature verifier. Each event of `state` and `auth_chain` must be
 * well-formed, in the room, signed by the servers its room version requires, and pass the auth
 * rules against its own auth events, which must themselves be in the answer and pass; an event
 * whose content hash does not match is redacted, as the spec says for any PDU.
 *
 * An event failing these checks is dropped, never stored, and so is every event whose auth
 * events it is among (as Synapse drops them; SyTest requires a join to survive a state event with
 * a bad signature). What the join rests on must survive: the create event (naming the room
 * version the join was made in), and every auth event of our join, each of which must also be
 * what the state before the join holds under its key. The join as returned must be ours (a
 * restricted join comes back co-signed by the resident server) and pass the auth rules against
 * its auth events and against that state. Anything else wrong refuses the whole answer, and the
 * caller tries the next server.
 */
import {
  authStateFromEvents,
  checkAuthEventsList,
  checkEventAuth,
} from "../protocol/auth_rules.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import {
  type Pdu,
  type RoomEvent,
  roomIdFromCreateEventId,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../protocol/events.ts";
import { checkContentHash } from "../protocol/hashing.ts";
import { isJsonObject, type JsonValue } from "../protocol/json.ts";
import { redactEvent } from "../protocol/redaction.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import { checkPduFormat } from "./pdu_input/format.ts";
import { SIGNATURE_CHECK_CONCURRENCY } from "./pdu_input/fetched_events.ts";
import { mapLimited } from "../concurrency.ts";

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
  /** Every event of `state` and `auth_chain` that passed, by ID, each once. */
  events: Map<string, CheckedEvent>;
  /** The state before the join event, from `state` (without the events dropped). */
  stateBefore: StateMap;
  /** The join event to append: ours, with the resident server's co-signature when it added one. */
  join: CheckedEvent;
  /** `servers_in_room` when the resident server sent it (used to pick backfill sources). */
  serversInRoom: string[];
  /** Events of the answer that failed a check, and why: none of them is stored. */
  dropped: { eventId: string; reason: string }[];
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

/** Check a `send_join` answer; throws SendJoinAnswerRefused when it cannot be used. */
export async function checkSendJoinAnswer(input: SendJoinCheckInput): Promise<CheckedJoinAnswer> {
  const { version, roomId } = input;
  const body = unwrapV1(input.answer);
  if (!isJsonObject(body)) throw new SendJoinAnswerRefused("the answer is not a JSON object");
  const stateList = pduList(body.state, "state");
  const chainList = pduList(body.auth_chain, "auth_chain");
  const dropped: { eventId: string; reason: string }[] = [];

  const events = new Map<string, CheckedEvent>();
  const stateIds: string[] = [];
  for (const [list, isState] of [[stateList, true], [chainList, false]] as const) {
    for (const raw of list) {
      const checked = checkPduFormat(raw, roomId, version);
      if (!checked.ok) {
        dropped.push({ eventId: checked.eventId, reason: checked.reason });
        continue;
      }
      const { eventId } = checked.value;
      if (!events.has(eventId)) events.set(eventId, checked.value);
      if (isState) stateIds.push(eventId);
    }
  }

  // Signatures: several at once, since each verification is independent and may fetch a key,
  // but a bounded few: the answer names as many servers as its sender likes.
  const results = await mapLimited(
    [...events.values()],
    SIGNATURE_CHECK_CONCURRENCY,
    async (e) => [e, await input.verifySignatures(e.pdu, version)] as const,
  );
  for (const [e, result] of results) {
    if (result.ok) continue;
    events.delete(e.eventId);
    dropped.push({ eventId: e.eventId, reason: `bad signature: ${result.reason}` });
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

  const create = createEventOf(stateIds, events, roomId, version);
  for (const [id, reason] of authoriseAll(events, create, version)) {
    events.delete(id);
    dropped.push({ eventId: id, reason });
  }
  if (!events.has(create.event_id)) {
    throw refused(create.event_id, "the create event fails the auth rules");
  }
  const stateBefore = stateMapOf(stateIds.filter((id) => events.has(id)), events);

  const join = await checkJoin(input, body.event, events, stateBefore, create);
  const servers = Array.isArray(body.servers_in_room)
    ? body.servers_in_room.filter((s): s is string => typeof s === "string")
    : [];
  return { events, stateBefore, join, serversInRoom: servers, dropped };
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
  stateIds: string[],
  events: Map<string, CheckedEvent>,
  roomId: string,
  version: RoomVersion,
): RoomEvent {
  const creates = stateIds.map((id) => events.get(id)?.event)
    .filter((e): e is RoomEvent => e?.type === "m.room.create" && e.state_key === "");
  if (creates.length === 0) throw new SendJoinAnswerRefused("no m.room.create event in the state");
  if (new Set(creates.map((e) => e.event_id)).size > 1) {
    throw new SendJoinAnswerRefused("two m.room.create events in the state");
  }
  const create = creates[0];
  const id = create.event_id;
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
 * Every event against its own auth events, auth events first; returns the events that fail and
 * why (an event citing a missing or failed auth event fails too, so does a cycle). Iterative: a
 * hostile answer may chain thousands of events.
 */
function authoriseAll(
  events: Map<string, CheckedEvent>,
  create: RoomEvent,
  version: RoomVersion,
): Map<string, string> {
  const passed = new Set<string>();
  const failed = new Map<string, string>();
  const onPath = new Set<string>();
  const options = { createEvent: create };
  for (const start of events.keys()) {
    if (passed.has(start) || failed.has(start)) continue;
    const stack: { id: string; expanded: boolean }[] = [{ id: start, expanded: false }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const { event } = events.get(top.id)!;
      if (!top.expanded) {
        top.expanded = true;
        onPath.add(top.id);
        for (const authId of event.auth_events) {
          const known = passed.has(authId) || failed.has(authId);
          // An auth event on the path is a cycle: it has no verdict yet, so this one fails.
          if (!known && !onPath.has(authId) && events.has(authId)) {
            stack.push({ id: authId, expanded: false });
          }
        }
        continue;
      }
      stack.pop();
      onPath.delete(top.id);
      if (passed.has(top.id) || failed.has(top.id)) continue;
      const reason = authFailure(event, events, passed, version, options);
      if (reason === undefined) passed.add(top.id);
      else failed.set(top.id, reason);
    }
  }
  return failed;
}

function authFailure(
  event: RoomEvent,
  events: Map<string, CheckedEvent>,
  passed: Set<string>,
  version: RoomVersion,
  options: { createEvent: RoomEvent },
): string | undefined {
  for (const authId of event.auth_events) {
    if (!events.has(authId)) return `auth event ${authId} is missing`;
    if (!passed.has(authId)) return `auth event ${authId} failed its checks or forms a cycle`;
  }
  const authEvents = event.auth_events.map((id) => events.get(id)!.event);
  const list = checkAuthEventsList(event, authEvents, version);
  if (!list.allowed) return `fails auth: ${list.reason}`;
  const decision = checkEventAuth(event, authStateFromEvents(authEvents), version, options);
  return decision.allowed ? undefined : `fails auth: ${decision.reason}`;
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
  // The template's auth events come from the resident's current state: the state it sends must
  // agree, or one of the two was tampered with (a dropped event, an altered power level).
  for (const authEvent of authEvents) {
    const key = stateKey(authEvent.type, authEvent.state_key ?? "");
    if (stateBefore.get(key) !== authEvent.event_id) {
      throw refused(
        ownJoin.eventId,
        `the join's auth event ${authEvent.event_id} is not the state's ${authEvent.type}`,
      );
    }
  }
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
