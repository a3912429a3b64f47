/**
 * Membership use cases: join, knock, invite, leave, kick, ban, unban and forget, each one
 * member event sent through the local event sender (so the auth rules decide). Member reads
 * (`/members`, `/joined_members`) are in domain/room_events/room_event_reads.ts, behind the read
 * pipeline.
 */
import { forbidden, invalidParam, MatrixError, notFound } from "../errors.ts";
import { isValidRoomId, isValidUserId } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
import { identicalCurrentState } from "../room_events/identical_state.ts";
import type { LocalEventRequest } from "../local_event_sender.ts";
import { guestJoinCondition } from "./guest_access.ts";
import { checkPendingInvites } from "./invite_quota.ts";
import { RoomAliases } from "./room_aliases.ts";
import { RoomState } from "./room_state.ts";
import {
  isLocal,
  memberContent,
  remoteInviteUnsupported,
  remoteRoomUnsupported,
  type RoomServiceDeps,
} from "./room_services.ts";

/** Membership changes and member reads. */
export class MembershipService {
  readonly #aliases: RoomAliases;

  constructor(private readonly deps: RoomServiceDeps) {
    this.#aliases = new RoomAliases(deps);
  }

  /**
   * Join a room by ID or alias; returns the room ID. Remote rooms need federation: 404.
   * `content` holds the client's own keys for the member event (as Synapse takes the extra keys
   * of a `/join` body); the membership and a restricted join's authoriser are the server's.
   */
  async join(
    userId: string,
    roomIdOrAlias: string,
    reason?: string,
    content: JsonObject = {},
    servers: readonly string[] = [],
  ): Promise<string> {
    const extra: JsonObject = { ...content };
    delete extra.membership;
    delete extra.join_authorised_via_users_server;
    if (reason !== undefined) extra.reason = reason;
    const target = await this.#joinTarget(roomIdOrAlias, servers);
    if (target?.remote) {
      await this.deps.remoteJoin!.join({
        userId,
        roomId: target.roomId,
        servers: target.servers,
        content: await memberContent(this.deps, userId, "join", extra),
      });
      return target.roomId;
    }
    // A remote alias of a room this server is in: the room is joined locally.
    const state = await this.#openByIdOrAlias(target?.roomId ?? roomIdOrAlias);
    const membership = await state.membership(userId);
    const rule = await state.joinRule();
    if (
      (rule === "restricted" || rule === "knock_restricted") && membership !== "join" &&
      membership !== "invite"
    ) {
      const authoriser = await this.#restrictedJoinAuthoriser(state, userId);
      if (authoriser) extra.join_authorised_via_users_server = authoriser;
    }
    await this.#sendMember(state.roomId, userId, userId, "join", extra, true);
    return state.roomId;
  }

  /**
   * `PUT /rooms/{roomId}/state/m.room.member/{target}`, under the membership rules (as Synapse
   * sends it through update_membership): remote invites are refused as by `/invite`, and the
   * client's `join_authorised_via_users_server` is dropped: only this server names the
   * authoriser of a restricted join, once it has checked the `allow` rules itself, and always one
   * of its own users who may invite. The rest of the client's content (a per-room profile, a
   * reason) is kept. Returns the event ID.
   */
  async putMemberState(
    sender: string,
    roomId: string,
    target: string,
    content: JsonObject,
  ): Promise<string> {
    const membership = content.membership;
    if (typeof membership !== "string" || !MEMBERSHIPS.includes(membership)) {
      throw invalidParam(`content.membership must be one of ${MEMBERSHIPS.join(", ")}`);
    }
    if (!isValidUserId(target)) throw invalidParam(`Invalid user ID ${JSON.stringify(target)}`);
    const state = await this.#open(roomId).catch((error) => {
      // As for other sends: an unknown room looks like one the user is not in.
      if (error instanceof MatrixError && error.errcode === "M_NOT_FOUND") {
        throw forbidden("You are not in this room");
      }
      throw error;
    });
    const extra: JsonObject = { ...content };
    delete extra.join_authorised_via_users_server;
    const remoteInvitee = membership === "invite" && !isLocal(target, this.deps.serverName);
    if (remoteInvitee && !this.deps.remoteMembership) throw remoteInviteUnsupported(target);
    if (membership === "join" && sender === target) {
      const current = await state.membership(target);
      const rule = await state.joinRule();
      if (
        (rule === "restricted" || rule === "knock_restricted") && current !== "join" &&
        current !== "invite"
      ) {
        const authoriser = await this.#restrictedJoinAuthoriser(state, target);
        if (authoriser) extra.join_authorised_via_users_server = authoriser;
      }
    }
    const clearsForgotten = membership === "join" || membership === "invite";
    return await this.#sendMember(
      roomId,
      sender,
      target,
      membership,
      extra,
      clearsForgotten,
      remoteInvitee ? this.#countersignFor(target) : undefined,
    );
  }

  /**
   * Knock on a room by ID or alias; returns the room ID. A room this server is not in is
   * knocked on over federation, through `servers` (the room's and alias's servers after them).
   */
  async knock(
    userId: string,
    roomIdOrAlias: string,
    reason?: string,
    servers: readonly string[] = [],
  ): Promise<string> {
    const remote = await this.#remoteKnockTarget(roomIdOrAlias, servers);
    if (remote !== undefined) {
      const content = await memberContent(
        this.deps,
        userId,
        "knock",
        reason === undefined ? {} : { reason },
      );
      await this.deps.remoteMembership!.knock(userId, remote.roomId, remote.servers, content);
      return remote.roomId;
    }
    const state = await this.#openByIdOrAlias(roomIdOrAlias);
    if (!state.version.knockJoinRule) {
      throw forbidden(`Room version ${state.version.id} does not support knocking`);
    }
    const membership = await state.membership(userId);
    if (membership === "join") throw forbidden("You are already in the room");
    if (membership === "ban") throw forbidden("You are banned from the room");
    const extra: JsonObject = reason === undefined ? {} : { reason };
    await this.#sendMember(state.roomId, userId, userId, "knock", extra, false);
    return state.roomId;
  }

  /**
   * Invite a user; `isDirect` marks a direct chat. A remote user's server countersigns the
   * invite first (`/createRoom` invites its remote invitees through here too).
   */
  async invite(
    sender: string,
    roomId: string,
    target: string,
    options: { reason?: string; isDirect?: boolean } = {},
  ): Promise<void> {
    const state = await this.#open(roomId);
    const remote = !isLocal(target, this.deps.serverName);
    if (remote && !this.deps.remoteMembership) throw remoteInviteUnsupported(target);
    const current = await state.membership(target);
    if (current === "join") throw forbidden(`${target} is already in the room`);
    if (current === "ban") throw forbidden(`${target} is banned from the room`);
    const extra: JsonObject = {};
    if (options.reason !== undefined) extra.reason = options.reason;
    if (options.isDirect) extra.is_direct = true;
    await this.#sendMember(
      roomId,
      sender,
      target,
      "invite",
      extra,
      true,
      remote ? this.#countersignFor(target) : undefined,
    );
  }

  /** Leave a room (or reject an invite, or withdraw a knock). Leaving twice is a no-op. */
  async leave(userId: string, roomId: string, reason?: string): Promise<void> {
    if (await this.#leavesRemotely(userId, roomId)) {
      return await this.deps.remoteMembership!.leave(userId, roomId, reason);
    }
    const state = await this.#open(roomId);
    const current = await state.membership(userId);
    if (current === undefined) throw forbidden("You are not in this room");
    if (current === "leave" || current === "ban") return;
    const extra: JsonObject = reason === undefined ? {} : { reason };
    await this.#sendMember(roomId, userId, userId, "leave", extra, false);
  }

  /** Kick a user who is joined, invited or knocking. */
  async kick(sender: string, roomId: string, target: string, reason?: string): Promise<void> {
    const state = await this.#open(roomId);
    const current = await state.membership(target);
    if (current !== "join" && current !== "invite" && current !== "knock") {
      throw forbidden(`${target} is not in the room`);
    }
    const extra: JsonObject = reason === undefined ? {} : { reason };
    await this.#sendMember(roomId, sender, target, "leave", extra, false);
  }

  /** Ban a user, whatever their membership. */
  async ban(sender: string, roomId: string, target: string, reason?: string): Promise<void> {
    await this.#open(roomId);
    const extra: JsonObject = reason === undefined ? {} : { reason };
    await this.#sendMember(roomId, sender, target, "ban", extra, false);
  }

  /** Lift a ban (the user's membership becomes `leave`). */
  async unban(sender: string, roomId: string, target: string, reason?: string): Promise<void> {
    const state = await this.#open(roomId);
    if ((await state.membership(target)) !== "ban") throw forbidden(`${target} is not banned`);
    const extra: JsonObject = reason === undefined ? {} : { reason };
    await this.#sendMember(roomId, sender, target, "leave", extra, false);
  }

  /** Forget a room the user has left; 400 while they are still in it. */
  async forget(userId: string, roomId: string): Promise<void> {
    // A room known only from a remote invite or knock, now rejected or withdrawn.
    const remote = isValidRoomId(roomId) && (await this.deps.store.roomHead(roomId)) === null
      ? await this.deps.remoteMembership?.held(userId, roomId)
      : undefined;
    if (remote !== undefined) {
      if (remote !== "leave") {
        throw new MatrixError("M_UNKNOWN", 400, "Leave the room before forgetting it");
      }
      await this.deps.directory.commit(
        this.deps.directory.forgottenMutations(userId, roomId, true),
      );
      return;
    }
    const state = await this.#open(roomId);
    const current = await state.membership(userId);
    if (current === undefined) throw notFound("You have never been in this room");
    if (current !== "leave" && current !== "ban") {
      throw new MatrixError("M_UNKNOWN", 400, "Leave the room before forgetting it");
    }
    await this.deps.directory.commit(this.deps.directory.forgottenMutations(userId, roomId, true));
  }

  /** Rooms the user is joined to. */
  async joinedRooms(userId: string): Promise<string[]> {
    const rooms = await this.deps.store.roomsOfUser(userId, ["join"]);
    return rooms.map((r) => r.roomId);
  }

  /**
   * The room to join (an alias resolved, through its server's query/directory when remote) and
   * whether over federation: a room this server holds no copy of, or holds without any joined
   * local member while a remote member is still joined. A room nobody is joined to stays local,
   * as before federation (its join rules decide). Undefined without federation.
   */
  async #joinTarget(
    roomIdOrAlias: string,
    servers: readonly string[],
  ): Promise<{ roomId: string; servers: string[]; remote: boolean } | undefined> {
    if (this.deps.remoteJoin === undefined) return undefined;
    let roomId = roomIdOrAlias;
    const aliasServers: string[] = [];
    if (roomIdOrAlias.startsWith("#")) {
      const local = await this.deps.directory.resolveAlias(roomIdOrAlias);
      if (local !== null) roomId = local.roomId;
      else if (isLocal(roomIdOrAlias, this.deps.serverName)) return undefined;
      else {
        const resolved = await this.deps.remoteJoin.resolveAlias(roomIdOrAlias);
        roomId = resolved.roomId;
        aliasServers.push(...resolved.servers);
      }
    }
    if (!isValidRoomId(roomId)) return undefined;
    if ((await this.deps.store.roomHead(roomId)) !== null) {
      // One key read in the common case (a local room with local members), not every member.
      const { store, serverName } = this.deps;
      if (await store.isServerInRoom(roomId, serverName)) {
        return { roomId, servers: [], remote: false };
      }
      const joined = [...(await store.serversInRoom(roomId)).keys()];
      if (joined.length === 0) return { roomId, servers: [], remote: false };
      aliasServers.push(...joined);
    }
    return { roomId, servers: [...new Set([...servers, ...aliasServers])], remote: true };
  }

  async #open(roomId: string): Promise<RoomState> {
    if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room ID ${JSON.stringify(roomId)}`);
    return await RoomState.open(this.deps.store, roomId);
  }

  async #openByIdOrAlias(roomIdOrAlias: string): Promise<RoomState> {
    const roomId = await this.#aliases.roomIdOf(roomIdOrAlias);
    if (!isValidRoomId(roomId)) {
      throw invalidParam(`Invalid room ID or alias ${JSON.stringify(roomIdOrAlias)}`);
    }
    try {
      return await RoomState.open(this.deps.store, roomId);
    } catch (error) {
      if (error instanceof MatrixError && error.errcode === "M_NOT_FOUND") {
        throw remoteRoomUnsupported(`Room ${roomIdOrAlias}`);
      }
      throw error;
    }
  }

  /**
   * The state after the last event before a timeline token. Clients also pass sync tokens
   * (matrix-js-sdk sends its last `next_batch`); those and anything else we cannot place mean
   * "now", which is what a sync token of the latest sync denotes anyway.
   */
  /**
   * For a restricted room: a local joined user able to invite, if the joiner is in one of the
   * rooms the join rule allows. Undefined otherwise (the auth rules then refuse the join).
   */
  async #restrictedJoinAuthoriser(state: RoomState, userId: string): Promise<string | undefined> {
    const allow = (await state.content("m.room.join_rules"))?.allow;
    if (!Array.isArray(allow)) return undefined;
    let eligible = false;
    for (const entry of allow) {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) continue;
      if (entry.type !== "m.room_membership" || typeof entry.room_id !== "string") continue;
      const id = await this.deps.store.currentStateEventId(entry.room_id, "m.room.member", userId);
      const event = id ? await this.deps.store.getEvent(id) : null;
      if (event?.pdu.content.membership === "join") {
        eligible = true;
        break;
      }
    }
    if (!eligible) return undefined;
    const levels = await state.powerLevels();
    for (const member of await this.deps.store.members(state.roomId, ["join"])) {
      if (!isLocal(member.userId, this.deps.serverName)) continue;
      if ((await state.userLevel(member.userId)) >= levels.invite) return member.userId;
    }
    return undefined;
  }

  /** The countersign step of an invite of a remote user: their server signs it first. */
  #countersignFor(target: string): LocalEventRequest["countersign"] {
    const remote = this.deps.remoteMembership!;
    return (event, version) => remote.countersignInvite(target, event, version);
  }

  /**
   * Whether leaving is a remote membership's end (a rejected invite, a withdrawn knock): the
   * user has one in a room this server holds no membership of theirs for.
   */
  async #leavesRemotely(userId: string, roomId: string): Promise<boolean> {
    const remote = this.deps.remoteMembership;
    if (!remote || !isValidRoomId(roomId)) return false;
    const held = await remote.held(userId, roomId);
    if (held !== "invite" && held !== "knock") return false;
    if ((await this.deps.store.roomHead(roomId)) === null) return true;
    const local = await this.deps.store.currentStateEventId(roomId, "m.room.member", userId);
    return local === null;
  }

  /**
   * Where to knock over federation, or undefined when the room is here: a room (by ID, or by
   * an alias resolved through its server) this server has no joined member in.
   */
  async #remoteKnockTarget(
    roomIdOrAlias: string,
    servers: readonly string[],
  ): Promise<{ roomId: string; servers: string[] } | undefined> {
    if (this.deps.remoteMembership === undefined) return undefined;
    let roomId = roomIdOrAlias;
    const more: string[] = [];
    if (roomIdOrAlias.startsWith("#")) {
      const local = await this.deps.directory.resolveAlias(roomIdOrAlias);
      if (local !== null) roomId = local.roomId;
      else if (isLocal(roomIdOrAlias, this.deps.serverName) || !this.deps.remoteJoin) {
        return undefined;
      } else {
        const resolved = await this.deps.remoteJoin.resolveAlias(roomIdOrAlias);
        roomId = resolved.roomId;
        more.push(...resolved.servers);
      }
    }
    if (!isValidRoomId(roomId)) return undefined;
    if ((await this.deps.store.roomHead(roomId)) !== null) {
      const joined = await this.deps.store.serversInRoom(roomId);
      if (joined.size === 0 || joined.has(this.deps.serverName)) return undefined;
      more.push(...joined.keys());
    }
    // The room ID's own server created it and is the likeliest to still be in it.
    if (!roomId.includes(":")) return { roomId, servers: [...new Set([...servers, ...more])] };
    more.push(roomId.slice(roomId.indexOf(":") + 1));
    return { roomId, servers: [...new Set([...servers, ...more])] };
  }

  /**
   * Send `target`'s member event; `clearsForgotten` un-forgets the room for them. An event that
   * would repeat the current one (a second join) returns the current event, as Synapse does.
   */
  async #sendMember(
    roomId: string,
    sender: string,
    target: string,
    membership: string,
    extra: JsonObject,
    clearsForgotten: boolean,
    countersign?: LocalEventRequest["countersign"],
  ): Promise<string> {
    // Every way to invite (/invite, a member state event) is held to the invitee's cap.
    if (membership === "invite") await checkPendingInvites(this.deps.store, target, roomId);
    const content = await memberContent(this.deps, target, membership, extra);
    // A guest joins only rooms open to guests, checked on the state the join commits on, and
    // says it is one (the mark the eviction on a guest_access change goes by), as in Synapse.
    const guestJoin = membership === "join" && sender === target &&
      (await this.deps.isGuest?.(target)) === true;
    if (guestJoin) content.kind = "guest";
    const existing = await identicalCurrentState(this.deps.store, {
      roomId,
      sender,
      type: "m.room.member",
      stateKey: target,
      content,
    });
    if (existing !== null) return existing;
    const sent = await this.deps.sender.send({
      roomId,
      sender,
      type: "m.room.member",
      stateKey: target,
      content,
      condition: guestJoin ? guestJoinCondition : undefined,
      countersign,
      extraMutations: clearsForgotten
        ? () => this.deps.directory.forgottenMutations(target, roomId, false)
        : undefined,
    });
    return sent.eventId;
  }
}

/** The memberships a member event may carry. */
const MEMBERSHIPS = ["join", "invite", "leave", "ban", "knock"];
