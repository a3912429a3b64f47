/**
 * Serving the membership handshakes to other servers (server-server spec "Joining Rooms",
 * "Leaving Rooms", "Knocking upon a room", "Inviting to a room"):
 *
 * - `make_join`/`make_leave`/`make_knock`: an unsigned member event template built on the
 *   room's current state (forward extremities, auth events from the auth events selection),
 *   refused unless the room's version is one the caller speaks (`ver`, M_INCOMPATIBLE_ROOM_VERSION)
 *   and the auth rules would allow the membership now (403). A restricted join (v8+) names a
 *   local user able to invite in `join_authorised_via_users_server`.
 * - `send_join`/`send_leave`/`send_knock`: the signed event, checked (format, the user's server
 *   is the caller, the membership is the one asked for, the signatures), co-signed when it names
 *   one of our users as a restricted join's authoriser, authorised against current state (a
 *   refused one writes nothing) and stored through the same path as every remote PDU.
 * - `invite` (v1, v2): an invite of one of our users, checked and signed by us, kept as an
 *   outlier and as the user's remote membership, so sync shows it before the server is in the
 *   room.
 */
import { authEventKeys } from "../protocol/auth_event_selection.ts";
import { authStateFromEvents, checkEventAuth } from "../protocol/auth_rules.ts";
import { toStrippedStateEvent } from "../protocol/client_event.ts";
import { signEvent } from "../protocol/event_signing.ts";
import {
  type Pdu,
  referencedIds,
  type RoomEvent,
  type StateKey,
  stateKey,
} from "../protocol/events.ts";
import { forbidden, MatrixError, notFound } from "../errors.ts";
import { remoteInviteLimits } from "./remote_invite_quota.ts";
import { encodeBase64Unpadded } from "../protocol/base64.ts";
import { computeReferenceHash } from "../protocol/hashing.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import type { SigningKey } from "../protocol/signing.ts";
import { toStoredRoomEvent } from "../protocol/stored_events.ts";
import type { PreparedEventWrites } from "../local_event_sender.ts";
import { verifyEventSignatures } from "./event_signatures.ts";
import type { KeyRing } from "./key_ring.ts";
import { type HandshakeMembership, membershipTemplate } from "./membership_template.ts";
import { checkPduFormat } from "./pdu_input/format.ts";
import type { PduInput } from "./pdu_input/types.ts";
import { RoomServerAcl } from "./server_acl.ts";
import type { ServerReadEvent } from "./server_visibility.ts";

/** State shown to an invitee or knocker (as the read pipeline's stripped state). */
export const STRIPPED_STATE_TYPES = [
  "m.room.create",
  "m.room.join_rules",
  "m.room.name",
  "m.room.avatar",
  "m.room.canonical_alias",
  "m.room.encryption",
  "m.room.topic",
];

/** Most events an auth chain walk reads before giving up (a sane room's chain is far smaller). */
const MAX_AUTH_CHAIN = 100_000;

/** Events for a server, through the read pipeline (visibility, redaction, PDU format). */
export type ServerReader = (
  read: { serverName: string; roomId: string; version: RoomVersion },
  events: readonly ServerReadEvent[],
) => Promise<JsonObject[]>;

/** A remote membership event as the federation sender queues it. */
type EventToForward = { eventId: string; roomId: string; pdu: Pdu };

/** What the handshakes are built from. */
export interface MembershipHandshakeDeps {
  store: EventStore;
  serverName: string;
  signingKey: SigningKey;
  keyRing: KeyRing;
  remoteMemberships: RemoteMembershipStore;
  /** The events a server is sent leave through the read pipeline. */
  readForServer: ServerReader;
  /**
   * The incoming-PDU pipeline every remote event goes through. Absent (a test wiring only the
   * handshakes), the event is appended with the store's `checkState` auth checks.
   */
  pduInput?: PduInput;
  /**
   * The federation sender's forwarding: an accepted join, leave or knock is queued, in its
   * commit, for the room's other servers (the origin sent it to us alone). Absent, they learn
   * of it only through the prev events of later events.
   */
  forwarder?: {
    prepareForwarded(
      event: EventToForward,
      origin: string,
    ): Promise<PreparedEventWrites | undefined>;
  };
  /** Wake the user's long-polling syncs after their remote membership changed. */
  notifyUser?: (userId: string, versionstamp: string) => void;
  /**
   * Whether a local user exists and is active: an invite for anyone else is signed but not
   * recorded, so no server can write memberships for made-up users. Absent, every local ID is
   * taken as one.
   */
  userExists?: (userId: string) => Promise<boolean>;
  now?: () => number;
}

/** A send_join answer (v2's body; v1 wraps it in `[200, ...]`). */
export interface SendJoinAnswer {
  origin: string;
  state: JsonObject[];
  auth_chain: JsonObject[];
  event: JsonObject;
  members_omitted: false;
}

/** 400 M_INCOMPATIBLE_ROOM_VERSION naming the room's version, as the spec asks. */
export function incompatibleRoomVersion(version: string): MatrixError {
  return new MatrixError(
    "M_INCOMPATIBLE_ROOM_VERSION",
    400,
    `Your server does not support the room's version ${version}`,
    { room_version: version },
  );
}

/** The resident side of the membership handshakes, and inbound invites. */
export class MembershipHandshakes {
  readonly #acl: RoomServerAcl;

  /** Over the event store and this server's identity. */
  constructor(private readonly deps: MembershipHandshakeDeps) {
    this.#acl = new RoomServerAcl(deps.store);
  }

  /**
   * `GET make_join|make_leave|make_knock/{roomId}/{userId}`: the template for `userId`, asked by
   * `origin`. `versions` is the `ver` list (join and knock; absent means only "1").
   */
  async makeMembership(
    origin: string,
    roomId: string,
    userId: string,
    membership: HandshakeMembership,
    versions?: readonly string[],
  ): Promise<{ room_version: string; event: JsonObject }> {
    this.#checkUserOfOrigin(origin, userId);
    const { version, head } = await this.#residentRoom(roomId, origin);
    if (membership !== "leave" && !(versions ?? ["1"]).includes(version.id)) {
      throw incompatibleRoomVersion(version.id);
    }
    if (membership === "knock" && !version.knockJoinRule) {
      throw incompatibleRoomVersion(version.id);
    }
    const content: JsonObject = {};
    if (membership === "join") {
      const authoriser = await this.#restrictedJoinAuthoriser(roomId, userId, version);
      if (authoriser !== undefined) content.join_authorised_via_users_server = authoriser;
    }
    const proto = { type: "m.room.member", state_key: userId, sender: userId, content };
    content.membership = membership;
    const authIds = await this.deps.store.currentStateEventIds(
      roomId,
      authEventKeys(proto, version),
    );
    const [prev, auth] = await Promise.all([
      this.deps.store.getEvents(head.forwardExtremities),
      this.deps.store.getEvents([...authIds.values()]),
    ]);
    const reference = (e: StoredEvent) => ({
      eventId: e.eventId,
      referenceHash: version.eventRefsAreTuples
        ? encodeBase64Unpadded(computeReferenceHash(e.pdu, version))
        : undefined,
    });
    const prevEvents = [...prev.values()];
    if (prevEvents.length === 0) throw notFound(`Unknown room ${roomId}`);
    const authEvents = [...authIds.values()].flatMap((id) => auth.get(id) ?? []);
    const template = membershipTemplate({
      version,
      roomId,
      userId,
      membership,
      content,
      prevEvents: prevEvents.slice(0, 20).map(reference),
      depth: Math.max(...prevEvents.map((e) => e.pdu.depth)) + 1,
      authEvents: authEvents.map(reference),
      origin: this.deps.serverName,
      originServerTs: this.#now(),
    });
    const event: RoomEvent = {
      ...(template as unknown as RoomEvent),
      event_id: "$template",
      prev_events: prevEvents.map((e) => e.eventId),
      auth_events: authEvents.map((e) => e.eventId),
    };
    const roomEvents = authEvents.map((e) => toStoredRoomEvent(e, version));
    const decision = checkEventAuth(event, authStateFromEvents(roomEvents), version, {
      createEvent: await this.#createEvent(roomId, version),
    });
    if (!decision.allowed) {
      throw forbidden(`${userId} may not ${membership} ${roomId}: ${decision.reason}`);
    }
    return { room_version: version.id, event: template };
  }

  /**
   * `PUT send_join|send_leave|send_knock/{roomId}/{eventId}`: check, co-sign where due, store.
   * Returns the event as stored (with our signature when we co-signed) and its version.
   */
  async sendMembership(
    origin: string,
    roomId: string,
    eventId: string,
    body: JsonValue | undefined,
    membership: HandshakeMembership,
  ): Promise<{ eventId: string; pdu: Pdu; version: RoomVersion }> {
    const { version } = await this.#residentRoom(roomId, origin);
    if (membership === "knock" && !version.knockJoinRule) {
      throw incompatibleRoomVersion(version.id);
    }
    const checked = checkPduFormat(body, roomId, version);
    if (!checked.ok) throw await this.#malformed(body, version, checked.reason);
    let { pdu } = checked.value;
    const { event } = checked.value;
    if (checked.value.eventId !== eventId) {
      throw new MatrixError("M_INVALID_PARAM", 400, "The event ID does not match the event");
    }
    if (event.type !== "m.room.member") {
      throw new MatrixError("M_INVALID_PARAM", 400, "The event is not an m.room.member event");
    }
    if (event.state_key !== event.sender) {
      throw new MatrixError("M_INVALID_PARAM", 400, "The state_key is not the sender");
    }
    if (event.content.membership !== membership) {
      throw new MatrixError("M_INVALID_PARAM", 400, `The membership is not ${membership}`);
    }
    this.#checkUserOfOrigin(origin, event.sender);
    // A restricted join naming one of our users is ours to vouch for: co-sign it before the
    // signature check, which then finds every signature it needs (the auth rules check that
    // the authoriser may invite, against the state the event lands on).
    const via = event.content.join_authorised_via_users_server;
    if (
      membership === "join" && version.restrictedJoinRule && typeof via === "string" &&
      parseUserId(via).ok && serverOf(via) === this.deps.serverName
    ) {
      pdu = await signEvent(pdu, version, this.deps.serverName, this.deps.signingKey);
    }
    const signatures = await verifyEventSignatures(pdu, version, this.#keyRingWithOurs());
    if (!signatures.ok) throw forbidden(`Bad signature: ${signatures.reason}`);
    // Authorised against current state first, so a refused membership writes nothing.
    await this.#authoriseNow(roomId, event, version);
    await this.#store(origin, roomId, eventId, pdu);
    return { eventId, pdu, version };
  }

  /** The send_join answer for a stored join: the state before it and the auth chain. */
  async joinAnswer(
    origin: string,
    roomId: string,
    joined: { eventId: string; pdu: Pdu; version: RoomVersion },
  ): Promise<SendJoinAnswer> {
    const { store } = this.deps;
    const { version } = joined;
    const before = await store.stateAtEvent(joined.eventId, "before");
    if (!before) throw notFound(`Unknown event ${joined.eventId}`);
    const stateEvents = [...(await store.getEvents([...before.values()])).values()];
    const chain = await this.#authChain([
      ...referencedIds(joined.pdu.auth_events),
      ...stateEvents.flatMap((e) => referencedIds(e.pdu.auth_events)),
    ]);
    const read = { serverName: origin, roomId, version };
    const [state, authChain] = await Promise.all([
      this.deps.readForServer(read, stateEvents),
      this.deps.readForServer(read, chain),
    ]);
    return {
      origin: this.deps.serverName,
      state,
      auth_chain: authChain,
      event: joined.pdu as unknown as JsonObject,
      members_omitted: false,
    };
  }

  /** The send_knock answer: the room's stripped-state events, as PDUs (spec v1.16). */
  async knockAnswer(origin: string, roomId: string, version: RoomVersion): Promise<JsonObject[]> {
    const { store } = this.deps;
    const ids = await store.currentStateEventIds(
      roomId,
      STRIPPED_STATE_TYPES.map((type) => stateKey(type, "")),
    );
    const events = [...(await store.getEvents([...ids.values()])).values()];
    return await this.deps.readForServer({ serverName: origin, roomId, version }, events);
  }

  /**
   * `PUT invite/{roomId}/{eventId}` (v1: `roomVersionId` undefined, the body is the event; v2:
   * the body's `room_version` and `invite_room_state`). Returns the event with our signature.
   */
  async receiveInvite(
    origin: string,
    roomId: string,
    eventId: string,
    invite: { event: JsonValue | undefined; roomVersion?: string; inviteRoomState?: JsonValue },
  ): Promise<Pdu> {
    const { store } = this.deps;
    const head = await store.roomHead(roomId);
    const versionId = invite.roomVersion ?? head?.roomVersion ?? "1";
    const version = roomVersion(versionId);
    if (!version) throw incompatibleRoomVersion(versionId);
    const checked = checkPduFormat(invite.event, roomId, version);
    if (!checked.ok) throw await this.#malformed(invite.event, version, checked.reason);
    const { event } = checked.value;
    if (checked.value.eventId !== eventId) {
      throw new MatrixError("M_INVALID_PARAM", 400, "The event ID does not match the event");
    }
    if (event.type !== "m.room.member" || event.content.membership !== "invite") {
      throw new MatrixError("M_INVALID_PARAM", 400, "The event is not an invite");
    }
    const target = event.state_key ?? "";
    if (!parseUserId(target).ok || serverOf(target) !== this.deps.serverName) {
      throw forbidden("The invitee is not a user of this server");
    }
    // A third-party invite's sender may be on another server (its signatures say so).
    if (!isJsonObject(event.content.third_party_invite)) {
      this.#checkUserOfOrigin(origin, event.sender);
    }
    const signatures = await verifyEventSignatures(checked.value.pdu, version, this.deps.keyRing);
    if (!signatures.ok) throw forbidden(`Bad signature: ${signatures.reason}`);
    if (head) {
      await this.#acl.assertAllowed(roomId, origin);
      // In a room we hold, the auth rules refuse inviting a member who is joined or banned;
      // such an invite would otherwise mask the real membership in sync.
      const current = await store.currentStateEventId(roomId, "m.room.member", target);
      const membership = current ? (await store.getEvent(current))?.pdu.content.membership : null;
      if (membership === "join" || membership === "ban") {
        throw forbidden(
          `${target} is ${membership === "join" ? "already in" : "banned from"} the room`,
        );
      }
    }

    const signed = await signEvent(
      checked.value.pdu,
      version,
      this.deps.serverName,
      this.deps.signingKey,
    );
    const raw = invite.event as JsonObject;
    const answer = raw.unsigned === undefined
      ? signed
      : { ...signed, unsigned: raw.unsigned as JsonObject };
    // An invite for a user who does not exist (or is deactivated) is signed, as Synapse signs
    // it (the inviting server may invite anyone; SyTest's ACL tests invite a made-up user), but
    // nothing is written: nobody here could see it, and no server may fill our store with
    // memberships of made-up users.
    if (this.deps.userExists && !(await this.deps.userExists(target))) return answer;
    // An invite we hold already was recorded when it first came: a retry (the inviting server's
    // first PUT timed out on its side) gets the same answer and writes nothing, so what the
    // user did since (a rejection, a knock) stands.
    if ((await store.findEvents([eventId])).has(eventId)) return answer;
    const carried = invite.inviteRoomState ??
      (isJsonObject(raw.unsigned) ? raw.unsigned.invite_room_state : undefined);
    // Stripped state is what the inviter chose to show; v1.16 sends it as PDUs, clients get
    // the stripped form either way.
    const strippedState = Array.isArray(carried)
      ? carried.filter(isJsonObject).filter((e) => typeof e.type === "string").map((e) =>
        toStrippedStateEvent(e as unknown as Pdu)
      )
      : [];
    // The membership first: it is what the user sees, and what a refusal (too large, too many
    // open invites) leaves unwritten; the outlier copy is the event as the room knows it.
    const limits = await remoteInviteLimits(store, target);
    const versionstamp = await this.deps.remoteMemberships.record({
      userId: target,
      roomId,
      membership: "invite",
      eventId,
      pdu: { ...signed, unsigned: { invite_room_state: strippedState } },
      roomVersion: version.id,
      servers: [...new Set([origin, serverOf(event.sender), serverOf(roomId)])].filter((s) =>
        s !== "" && s !== this.deps.serverName
      ),
    }, limits);
    await store.storeOutliers(roomId, [{ eventId, pdu: signed, status: "accepted" }]);
    this.deps.notifyUser?.(target, versionstamp);
    return answer;
  }

  /**
   * The room as this server holds it, for a handshake from `origin`: 404 when we have no copy
   * or none of our users is joined any more (we cannot speak for the room), 403 when the room's
   * server ACL denies the caller.
   */
  async #residentRoom(roomId: string, origin: string) {
    const { store, serverName } = this.deps;
    const head = await store.roomHead(roomId);
    if (!head) throw notFound(`Unknown room ${roomId}`);
    const version = roomVersion(head.roomVersion);
    if (!version) throw notFound(`Unknown room ${roomId}`);
    if (!(await store.isServerInRoom(roomId, serverName))) {
      throw notFound(`This server is no longer in ${roomId}`);
    }
    await this.#acl.assertAllowed(roomId, origin);
    return { head, version };
  }

  /** A server may only make and send memberships of its own users. */
  #checkUserOfOrigin(origin: string, userId: string): void {
    if (!parseUserId(userId).ok) {
      throw new MatrixError("M_INVALID_PARAM", 400, `Invalid user ID ${JSON.stringify(userId)}`);
    }
    if (serverOf(userId) !== origin) {
      throw forbidden(`${origin} may not act for ${userId}, a user of another server`);
    }
  }

  /**
   * For a join under a restricted rule: one of our joined users with the invite level, when the
   * joiner is not already joined or invited (then the plain rules apply). The joiner must be in
   * a room the rule allows, as this server sees it.
   */
  async #restrictedJoinAuthoriser(
    roomId: string,
    userId: string,
    version: RoomVersion,
  ): Promise<string | undefined> {
    const { store, serverName } = this.deps;
    const keys: StateKey[] = [
      stateKey("m.room.join_rules", ""),
      stateKey("m.room.member", userId),
      stateKey("m.room.power_levels", ""),
      stateKey("m.room.create", ""),
    ];
    const ids = await store.currentStateEventIds(roomId, keys);
    const events = await store.getEvents([...ids.values()]);
    const at = (key: StateKey) => events.get(ids.get(key) ?? "");
    const rules = at(keys[0])?.pdu.content;
    const rule = rules?.join_rule;
    const restricted = (rule === "restricted" && version.restrictedJoinRule) ||
      (rule === "knock_restricted" && version.knockRestrictedJoinRule);
    if (!restricted) return undefined;
    const current = at(keys[1])?.pdu.content.membership;
    if (current === "join" || current === "invite") return undefined;
    const allow = Array.isArray(rules?.allow) ? rules.allow : [];
    let eligible = false;
    let resident = false;
    for (const entry of allow) {
      if (!isJsonObject(entry) || entry.type !== "m.room_membership") continue;
      if (typeof entry.room_id !== "string") continue;
      if (!(await store.isServerInRoom(entry.room_id, serverName))) continue;
      resident = true;
      const id = await store.currentStateEventId(entry.room_id, "m.room.member", userId);
      const member = id ? await store.getEvent(id) : null;
      if (member?.pdu.content.membership === "join") {
        eligible = true;
        break;
      }
    }
    if (!resident) {
      throw new MatrixError(
        "M_UNABLE_TO_AUTHORISE_JOIN",
        400,
        "This server is in none of the rooms the join rule allows",
      );
    }
    if (!eligible) throw forbidden(`${userId} is in none of the rooms the join rule allows`);
    const stateEvents = [...events.values()].map((e) => toStoredRoomEvent(e, version));
    const state = authStateFromEvents(stateEvents);
    const create = state(stateKey("m.room.create", ""));
    for (const member of await store.members(roomId, ["join"])) {
      if (serverOf(member.userId) !== serverName) continue;
      const probe: RoomEvent = {
        event_id: "$probe",
        room_id: roomId,
        sender: member.userId,
        type: "m.room.member",
        state_key: userId,
        content: { membership: "invite" },
        origin_server_ts: this.#now(),
        prev_events: [],
        auth_events: [],
      };
      // Whether this member could invite the joiner now: the invite rule of the auth rules,
      // over the state the join would be authorised on.
      const memberEvent = await store.getEvent(member.eventId);
      if (!memberEvent) continue;
      const lookup = authStateFromEvents([
        ...stateEvents,
        toStoredRoomEvent(memberEvent, version),
      ]);
      const createEvent = create ?? await this.#createEvent(roomId, version);
      if (checkEventAuth(probe, lookup, version, { createEvent }).allowed) {
        return member.userId;
      }
    }
    throw new MatrixError(
      "M_UNABLE_TO_GRANT_JOIN",
      400,
      "No user of this server in the room may invite",
    );
  }

  /** The auth rules against the room's current state, before anything is written. */
  async #authoriseNow(roomId: string, event: RoomEvent, version: RoomVersion): Promise<void> {
    const { store } = this.deps;
    const ids = await store.currentStateEventIds(roomId, authEventKeys(event, version));
    const events = await store.getEvents([...ids.values()]);
    const lookup = authStateFromEvents(
      [...events.values()].map((e) => toStoredRoomEvent(e, version)),
    );
    const decision = checkEventAuth(event, lookup, version, {
      createEvent: await this.#createEvent(roomId, version),
    });
    if (!decision.allowed) throw forbidden(`Not allowed: ${decision.reason}`);
  }

  /** The room's create event (v12 leaves it out of auth events, the rules still need it). */
  async #createEvent(roomId: string, version: RoomVersion): Promise<RoomEvent | undefined> {
    const id = await this.deps.store.currentStateEventId(roomId, "m.room.create", "");
    const event = id ? await this.deps.store.getEvent(id) : null;
    return event ? toStoredRoomEvent(event, version) : undefined;
  }

  /** Store a checked membership event the way every remote PDU is stored. */
  async #store(origin: string, roomId: string, eventId: string, pdu: Pdu): Promise<void> {
    const { pduInput, store } = this.deps;
    let status: string | undefined;
    let reason: string | undefined;
    if (pduInput) {
      const forwarder = this.deps.forwarder;
      const hooks = forwarder
        ? [{ prepare: (event: EventToForward) => forwarder.prepareForwarded(event, origin) }]
        : [];
      const outcome = await pduInput.handle(origin, roomId, pdu, { hooks });
      status = outcome.status;
      reason = outcome.error;
    } else {
      const result = await store.append({
        roomId,
        events: [{ eventId, pdu, status: "accepted", checkState: true }],
      });
      status = result.events[0].status;
    }
    if (status !== "accepted") {
      throw forbidden(`The event was not accepted: ${reason ?? status ?? "dropped"}`);
    }
  }

  /** The auth chain of `ids`: every auth event reachable from them, from log and outliers. */
  async #authChain(ids: string[]): Promise<ServerReadEvent[]> {
    const { store } = this.deps;
    const seen = new Map<string, ServerReadEvent>();
    let frontier = [...new Set(ids)];
    while (frontier.length > 0 && seen.size < MAX_AUTH_CHAIN) {
      const wanted = frontier.filter((id) => !seen.has(id));
      const found = new Map<string, ServerReadEvent>(await store.getEvents(wanted));
      const missing = wanted.filter((id) => !found.has(id));
      if (missing.length > 0) {
        for (const [id, e] of await store.findEvents(missing)) found.set(id, e);
      }
      frontier = [];
      for (const id of wanted) {
        const event = found.get(id);
        if (!event || seen.has(id)) continue;
        seen.set(id, event);
        frontier.push(...referencedIds(event.pdu.auth_events).filter((a) => !seen.has(a)));
      }
    }
    return [...seen.values()].sort((a, b) => a.pdu.depth - b.pdu.depth);
  }

  /**
   * The error for an event failing the format check: 403 when it is not signed as it must be
   * (an unsigned or badly signed event is refused for that first, as Synapse does, whatever
   * else is wrong with it), else 400 M_BAD_JSON (non-canonical JSON included).
   */
  async #malformed(
    body: JsonValue | undefined,
    version: RoomVersion,
    reason: string,
  ): Promise<MatrixError> {
    if (isJsonObject(body)) {
      try {
        const signatures = await verifyEventSignatures(body, version, this.#keyRingWithOurs());
        if (!signatures.ok) return forbidden(`Bad signature: ${signatures.reason}`);
      } catch (error) {
        if (error instanceof MatrixError) return error;
        // Too malformed to check its signatures at all: the format error says why.
      }
    }
    return new MatrixError("M_BAD_JSON", 400, `Bad event: ${reason}`);
  }

  /** The key ring, plus our own current key (our co-signature is checked like any other). */
  #keyRingWithOurs(): KeyRing {
    const { keyRing, serverName, signingKey } = this.deps;
    return {
      verifyKey: (server, keyId, atTs) =>
        server === serverName && keyId === signingKey.keyId
          ? Promise.resolve(signingKey.publicKey)
          : keyRing.verifyKey(server, keyId, atTs),
    };
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}

/** The server part of a user, room or event ID (after the first ':'). */
export function serverOf(id: string): string {
  const colon = id.indexOf(":");
  return colon < 0 ? "" : id.slice(colon + 1);
}
