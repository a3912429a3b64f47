/**
 * Membership handshakes this server starts with other servers for its own users:
 *
 * - inviting a remote user: the invite is built and authorised by the local sender as usual,
 *   then sent to the invitee's server (`PUT /v2/invite`, v1 for rooms v1/v2), and stored only
 *   with that server's signature (the local sender's `countersign` step);
 * - rejecting a remote invite, or withdrawing a knock, for a room this server is not in:
 *   `make_leave`/`send_leave` (v2, v1 when unknown) through the servers the membership names;
 *   when none of them answers, the leave is made locally (signed by us, citing the invite), as
 *   Synapse does, so the user is never stuck with an invite they cannot reject;
 * - knocking on a remote room: `make_knock`/`send_knock` through the given servers.
 *
 * The memberships this produces for rooms we are not in live in the RemoteMembershipStore,
 * where sync finds them. Leaving a remote room we are joined to is a normal local send.
 */
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { toStrippedStateEvent } from "../protocol/client_event.ts";
import { buildEvent } from "../protocol/event_builder.ts";
import { verifyEventSignature } from "../protocol/event_signing.ts";
import { computeEventId } from "../protocol/event_ids.ts";
import { type Pdu, stateKey } from "../protocol/events.ts";
import { forbidden, MatrixError, notFound } from "../errors.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { EventStore } from "../ports/event_store.ts";
import {
  type FederationRequest,
  type FederationResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../ports/federation_transport.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import { type RoomVersion, roomVersion, supportedRoomVersions } from "../protocol/room_versions.ts";
import type { SigningKey } from "../protocol/signing.ts";
import type { KeyRing } from "./key_ring.ts";
import { serverOf, STRIPPED_STATE_TYPES } from "./membership_handshakes.ts";
import {
  checkMembershipTemplate,
  type HandshakeMembership,
  signFromTemplate,
} from "./membership_template.ts";

/** How long an invitee's server may take to sign an invite (the room's other sends go on meanwhile). */
const INVITE_TIMEOUT_MS = 15_000;

/** Room versions we speak, for make_knock's `ver` parameters. */
const VER_QUERY = supportedRoomVersions().map((v) => `ver=${encodeURIComponent(v.id)}`).join("&");

/** What the outbound handshakes are built from. */
export interface RemoteMembershipDeps {
  store: EventStore;
  transport: FederationTransport;
  serverName: string;
  signingKey: SigningKey;
  keyRing: KeyRing;
  remoteMemberships: RemoteMembershipStore;
  /** Wake the user's long-polling syncs after their remote membership changed. */
  notifyUser?: (userId: string, versionstamp: string) => void;
  now?: () => number;
}

/** Invites, rejections and knocks this server sends for its users. */
export class RemoteMembershipService {
  /** Over the transport, the event store and this server's identity. */
  constructor(private readonly deps: RemoteMembershipDeps) {}

  /**
   * The local sender's countersign step for an invite of `target`, a user of another server:
   * send the event to the invitee's server and return it with that server's signature. Throws
   * (so nothing is stored) when that server refuses, cannot be reached or signs badly.
   */
  async countersignInvite(
    target: string,
    event: { eventId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<Pdu> {
    const destination = serverOf(target);
    const roomId = event.pdu.room_id ?? "";
    const strippedState = await this.#inviteState(roomId, event.pdu.sender);
    const path = (v: string) =>
      `/_matrix/federation/${v}/invite/${encodeURIComponent(roomId)}/${
        encodeURIComponent(event.eventId)
      }`;
    // v1 is the only form servers of rooms v1/v2 are sure to speak; the rest take v2.
    const v1 = version.id === "1" || version.id === "2";
    const response = await this.#request({
      method: "PUT",
      destination,
      path: path(v1 ? "v1" : "v2"),
      body: v1
        ? {
          ...(event.pdu as unknown as JsonObject),
          unsigned: { invite_room_state: strippedState },
        }
        : {
          room_version: version.id,
          event: event.pdu as unknown as JsonObject,
          invite_room_state: strippedState,
        },
      timeoutMs: INVITE_TIMEOUT_MS,
    });
    passThroughError(destination, response);
    const body = v1 && Array.isArray(response.body) ? response.body[1] : response.body;
    const returned = isJsonObject(body) ? body.event : undefined;
    if (!isJsonObject(returned)) throw badAnswer(destination, "the answer holds no event");
    // Non-canonical JSON (a float in a v6+ room) is a bad event, whatever else: M_BAD_JSON.
    canonicalJsonBytes(returned, { strict: version.strictCanonicalJson });
    let returnedId: string;
    try {
      returnedId = computeEventId(returned as unknown as Pdu, version);
    } catch {
      throw badAnswer(destination, "the returned event has no ID");
    }
    if (returnedId !== event.eventId) {
      throw badAnswer(destination, "the returned event is not the invite sent");
    }
    // Only their signature is taken from the answer: the rest of the event is ours.
    const theirs = isJsonObject(returned.signatures) ? returned.signatures[destination] : undefined;
    if (!isJsonObject(theirs)) throw badAnswer(destination, "the invite is not signed by them");
    const signatures = Object.fromEntries(
      Object.entries(theirs).filter(([, v]) => typeof v === "string"),
    ) as Record<string, string>;
    const countersigned: Pdu = {
      ...event.pdu,
      signatures: { ...event.pdu.signatures, [destination]: signatures },
    };
    if (!(await this.#signedBy(countersigned, version, destination))) {
      throw badAnswer(destination, "their signature on the invite does not verify");
    }
    return countersigned;
  }

  /** The user's membership in a room known only from another server, if any. */
  async held(userId: string, roomId: string): Promise<string | undefined> {
    return (await this.deps.remoteMemberships.get(userId, roomId))?.membership;
  }

  /**
   * Reject a remote invite or withdraw a remote knock of `userId` in `roomId`, a room this
   * server is not in. 403 when the user has no such membership.
   */
  async leave(userId: string, roomId: string, reason?: string): Promise<void> {
    const held = await this.deps.remoteMemberships.get(userId, roomId);
    if (!held || (held.membership !== "invite" && held.membership !== "knock")) {
      throw forbidden("You are not invited to, or knocking on, this room");
    }
    const version = roomVersion(held.roomVersion);
    if (!version) throw notFound(`Room version ${held.roomVersion} is not supported`);
    const content: JsonObject = reason === undefined ? {} : { reason };
    let left: { eventId: string; pdu: Pdu } | undefined;
    for (const server of candidates(held.servers, this.deps.serverName)) {
      try {
        left = await this.#handshake(server, roomId, userId, "leave", content);
        break;
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        console.warn("remote leave: failed through", server, roomId, error.message);
      }
    }
    // No server took the leave: the user still leaves here. The event cites the invite or
    // knock, the only event of the room we hold, as its prev and auth event.
    left ??= await this.#outOfBandLeave(held.pdu, held.eventId, version, content);
    const versionstamp = await this.deps.remoteMemberships.record({
      userId,
      roomId,
      membership: "leave",
      eventId: left.eventId,
      pdu: left.pdu,
      roomVersion: version.id,
      servers: held.servers,
    });
    this.deps.notifyUser?.(userId, versionstamp);
  }

  /**
   * Knock on `roomId` through the first of `servers` that lets us; returns once the knock is
   * recorded for sync. Errors of the last server tried are passed on (403 if the room is not
   * knockable, 502 when none answered).
   */
  async knock(
    userId: string,
    roomId: string,
    servers: readonly string[],
    content: JsonObject = {},
  ): Promise<void> {
    const tried = candidates(servers, this.deps.serverName);
    if (tried.length === 0) throw notFound(`No known servers to knock on ${roomId} through`);
    let lastError: MatrixError | undefined;
    for (const server of tried) {
      try {
        const knocked = await this.#handshake(server, roomId, userId, "knock", content);
        const versionstamp = await this.deps.remoteMemberships.record({
          userId,
          roomId,
          membership: "knock",
          eventId: knocked.eventId,
          pdu: knocked.pdu,
          roomVersion: knocked.version.id,
          servers: [server, ...tried.filter((s) => s !== server)],
        });
        this.deps.notifyUser?.(userId, versionstamp);
        return;
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        console.warn("remote knock: failed through", server, roomId, error.message);
        lastError = error;
      }
    }
    throw lastError ??
      new MatrixError("M_UNKNOWN", 502, `No server could be reached to knock on ${roomId}`);
  }

  /**
   * make_leave/make_knock then send_leave/send_knock through `server`. A knock's answer brings
   * the room's stripped state, kept in the event's `unsigned` for sync.
   */
  async #handshake(
    server: string,
    roomId: string,
    userId: string,
    membership: Exclude<HandshakeMembership, "join">,
    content: JsonObject,
  ): Promise<{ eventId: string; pdu: Pdu; version: RoomVersion }> {
    const ids = `${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}`;
    const made = await this.#request({
      method: "GET",
      destination: server,
      path: membership === "knock"
        ? `/_matrix/federation/v1/make_knock/${ids}?${VER_QUERY}`
        : `/_matrix/federation/v1/make_leave/${ids}`,
    });
    passThroughError(server, made);
    const { version, template } = checkMembershipTemplate(server, made.body, {
      roomId,
      userId,
      membership,
    });
    const built = await signFromTemplate({
      version,
      template,
      serverName: this.deps.serverName,
      signingKey: this.deps.signingKey,
      originServerTs: this.#now(),
      content,
    });
    const eventPath = `${encodeURIComponent(roomId)}/${encodeURIComponent(built.eventId)}`;
    const body = built.pdu as unknown as JsonObject;
    if (membership === "knock") {
      const sent = await this.#request({
        method: "PUT",
        destination: server,
        path: `/_matrix/federation/v1/send_knock/${eventPath}`,
        body,
      });
      passThroughError(server, sent);
      const state = isJsonObject(sent.body) ? sent.body.knock_room_state : undefined;
      const stripped = Array.isArray(state)
        ? state.filter(isJsonObject).filter((e) => typeof e.type === "string")
          .map((e) => toStrippedStateEvent(e as unknown as Pdu))
        : [];
      return {
        eventId: built.eventId,
        pdu: { ...built.pdu, unsigned: { knock_room_state: stripped } },
        version,
      };
    }
    let sent = await this.#request({
      method: "PUT",
      destination: server,
      path: `/_matrix/federation/v2/send_leave/${eventPath}`,
      body,
    });
    // A server without v2 answers 404 M_UNRECOGNIZED (or a bare 404/405): try v1.
    if (sent.status === 404 || sent.status === 405) {
      const errcode = isJsonObject(sent.body) ? sent.body.errcode : undefined;
      if (errcode === undefined || errcode === "M_UNRECOGNIZED") {
        sent = await this.#request({
          method: "PUT",
          destination: server,
          path: `/_matrix/federation/v1/send_leave/${eventPath}`,
          body,
        });
      }
    }
    passThroughError(server, sent);
    return { eventId: built.eventId, pdu: built.pdu, version };
  }

  /** A leave made here when no server of the room takes one: prev and auth is the membership. */
  async #outOfBandLeave(
    membershipPdu: Pdu,
    membershipId: string,
    version: RoomVersion,
    content: JsonObject,
  ): Promise<{ eventId: string; pdu: Pdu }> {
    const userId = membershipPdu.state_key ?? "";
    const built = await buildEvent({
      version,
      roomId: membershipPdu.room_id,
      sender: userId,
      type: "m.room.member",
      stateKey: userId,
      content: { ...content, membership: "leave" },
      prevEvents: [{ eventId: membershipId, depth: membershipPdu.depth }],
      // The builder cites the current state its look-up gives: here only the membership.
      currentState: (key) =>
        key === stateKey("m.room.member", userId) ? { eventId: membershipId } : undefined,
      serverName: this.deps.serverName,
      signingKey: this.deps.signingKey,
      originServerTs: this.#now(),
    });
    return { eventId: built.eventId, pdu: built.pdu };
  }

  /** The stripped state an invitee's server shows its user: the room's identity, as PDUs. */
  async #inviteState(roomId: string, inviter: string): Promise<JsonObject[]> {
    const { store } = this.deps;
    const keys = STRIPPED_STATE_TYPES.map((type) => stateKey(type, ""));
    keys.push(stateKey("m.room.member", inviter));
    const ids = await store.currentStateEventIds(roomId, keys);
    const events = await store.getEvents([...ids.values()]);
    // Stripped form: what Synapse 1.67 and the spec before v1.16 send, and what clients read.
    return [...events.values()].map((e) => toStrippedStateEvent(e.pdu));
  }

  /** Whether `server` signed `pdu` with a key the key ring holds valid at the event's time. */
  async #signedBy(pdu: Pdu, version: RoomVersion, server: string): Promise<boolean> {
    const signatures = pdu.signatures[server] ?? {};
    const atTs = version.enforceKeyValidity ? pdu.origin_server_ts : 0;
    let verified = false;
    for (const keyId of Object.keys(signatures)) {
      if (!keyId.startsWith("ed25519:")) continue;
      const key = await this.deps.keyRing.verifyKey(server, keyId, atTs).catch(() => undefined);
      if (!key) continue;
      if (!(await verifyEventSignature(pdu, version, server, keyId, key))) return false;
      verified = true;
    }
    return verified;
  }

  /** A request; a server we cannot reach is a 502 for our client. */
  async #request(request: FederationRequest): Promise<FederationResponse> {
    try {
      return await this.deps.transport.request(request);
    } catch (error) {
      if (!(error instanceof FederationUnreachable)) throw error;
      throw new MatrixError("M_UNKNOWN", 502, `${request.destination} is unreachable`);
    }
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}

/** The servers to try, deduplicated, never ourselves. */
function candidates(servers: readonly string[], us: string): string[] {
  return [...new Set(servers)].filter((s) => s !== "" && s !== us);
}

/** A remote server's answer we cannot use: 502. */
function badAnswer(server: string, reason: string): MatrixError {
  return new MatrixError("M_UNKNOWN", 502, `${server} gave a bad answer: ${reason}`);
}

/**
 * A non-200 answer becomes an error for our client: a remote 4xx with a Matrix error keeps its
 * errcode and status (a refusal is a refusal), anything else is 502.
 */
function passThroughError(server: string, response: FederationResponse): void {
  if (response.status === 200) return;
  const body: JsonValue | null = response.body;
  if (response.status >= 400 && response.status < 500 && isJsonObject(body)) {
    const errcode = typeof body.errcode === "string" ? body.errcode : "M_UNKNOWN";
    const message = typeof body.error === "string" ? body.error : `refused by ${server}`;
    const extra: Record<string, unknown> = {};
    if (typeof body.room_version === "string") extra.room_version = body.room_version;
    throw new MatrixError(errcode, response.status, `${server}: ${message}`, extra);
  }
  throw new MatrixError("M_UNKNOWN", 502, `${server} answered ${response.status}`);
}
