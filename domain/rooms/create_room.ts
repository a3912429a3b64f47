/**
 * `POST /createRoom`: validate the whole request first (alias free, invitees valid, power
 * levels that let the creator send everything asked for, and a dry run of every event through
 * the builder and the auth rules), then create the room and send its events in the order the
 * spec gives: create, creator join, power levels, canonical alias, preset state, initial_state,
 * name, topic, invites. A refused request writes nothing.
 *
 * Invitees of other servers are invited last, once the room and its local invites are stored,
 * exactly as by a later `/invite` (MembershipService.invite): their server countersigns the
 * invite over federation, `is_direct` in its content. A remote invite that fails (the server
 * is unreachable, refuses or signs badly) writes nothing of itself; the room stands as created
 * with its local invites, the client gets its ID and the failure is logged. (Synapse 1.67 also
 * keeps the room but answers the request with the invite's error, so the client never learns
 * the ID of a room it is joined to.) The creator can invite again. What a remote invite is
 * checked for up front (a valid ID, the invitee's invite cap, the auth rules in the dry run) is
 * checked before anything is written, as for local invitees. The invitee's own server may
 * still refuse (its cap on invites from other servers, remote_invite_quota.ts, which this server
 * cannot see): that is such a failure. With federation off, remote invitees are refused up front.
 */
import { mapLimited } from "../concurrency.ts";
import { invalidParam, MatrixError, unsupportedRoomVersion } from "../errors.ts";
import { isValidUserId, parseRoomAlias } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
import { parsePowerLevels } from "../protocol/power_levels.ts";
import { DEFAULT_ROOM_VERSION, type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import type { CommitMutation } from "../ports/event_store.ts";
import type { RoomVisibility } from "../ports/room_directory_store.ts";
import { checkPendingInvites } from "./invite_quota.ts";
import { RoomAliases } from "./room_aliases.ts";
import { MembershipService } from "./membership.ts";
import { checkRoomCreation } from "./room_creation_check.ts";
import {
  defaultPowerLevels,
  type InitialStateEvent,
  presetState,
  type RoomPreset,
} from "./room_presets.ts";
import {
  isLocal,
  memberContent,
  remoteInviteUnsupported,
  type RoomServiceDeps,
} from "./room_services.ts";

/** A validated `/createRoom` request. */
export interface CreateRoomRequest {
  creator: string;
  visibility?: RoomVisibility;
  roomAliasName?: string;
  name?: string;
  topic?: string;
  invite?: string[];
  isDirect?: boolean;
  roomVersion?: string;
  creationContent?: JsonObject;
  initialState?: { type: string; state_key?: string; content: JsonObject }[];
  preset?: RoomPreset;
  powerLevelContentOverride?: JsonObject;
}

/** One planned event after the create event. */
interface PlannedEvent extends InitialStateEvent {
  /** Writes for the same commit, built once the room ID is known. */
  extraMutations?: (roomId: string) => CommitMutation[];
}

/** A room creation plan: everything decided before anything is written. */
export interface RoomPlan {
  version: RoomVersion;
  createContent: JsonObject;
  events: PlannedEvent[];
  /** The alias asked for (`room_alias_name`), if any. */
  alias?: string;
  /**
   * Writes for the create event's commit: the alias record, whose check (alias still free)
   * makes a lost race refuse the room before anything of it is stored.
   */
  createMutations?: (roomId: string) => CommitMutation[];
  /**
   * Invitees of other servers, invited over federation once `events` are stored (their invites
   * are not in `events`, though the dry run authorised them in their place after those).
   */
  remoteInvitees: string[];
}

/** Where RoomCreator reports what it could not do without failing the request. */
export type CreateRoomLog = (message: string, ...details: unknown[]) => void;

/** How many invitees' servers `/createRoom` asks at once to countersign their invites. */
const REMOTE_INVITE_SERVERS_AT_ONCE = 8;

/** 400 M_ROOM_IN_USE: the alias asked for is taken. */
const roomInUse = (alias: string) =>
  new MatrixError("M_ROOM_IN_USE", 400, `Room alias ${alias} is already taken`);

/** The error for a request whose state would not pass the auth rules. */
const invalidRoomState = (message: string) => new MatrixError("M_INVALID_ROOM_STATE", 400, message);

/** Creates rooms. */
export class RoomCreator {
  readonly #membership: MembershipService;
  readonly #log: CreateRoomLog;

  /** Over the rooms services' deps; `log` takes failed remote invites (console.warn). */
  constructor(private readonly deps: RoomServiceDeps, options: { log?: CreateRoomLog } = {}) {
    this.#membership = new MembershipService(deps);
    this.#log = options.log ?? console.warn;
  }

  /** Create the room; returns its ID. Nothing is written when the request is refused. */
  async create(request: CreateRoomRequest): Promise<string> {
    const plan = await this.plan(request);
    let roomId: string;
    try {
      ({ roomId } = await this.deps.sender.createRoom({
        version: plan.version.id,
        creator: request.creator,
        content: plan.createContent,
        extraMutations: plan.createMutations,
      }));
    } catch (error) {
      // The create commit checks the alias is still free: 409 means another request took it
      // since plan() looked, and nothing of this room was written.
      if (
        plan.alias && error instanceof MatrixError && error.status === 409 &&
        await this.deps.directory.resolveAlias(plan.alias)
      ) {
        throw roomInUse(plan.alias);
      }
      throw error;
    }
    // The creator's join must land before the rest can pass the auth rules; the rest are
    // queued together so the sender folds them into one commit.
    const [join, ...rest] = plan.events;
    await this.#send(roomId, request.creator, join);
    const results = await Promise.allSettled(
      rest.map((e) => this.#send(roomId, request.creator, e)),
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await this.#inviteRemote(roomId, request, plan.remoteInvitees);
    return roomId;
  }

  /**
   * Invite the users of other servers into the stored room, each as `/invite` would. Servers
   * are asked a few at a time, each server's invitees one after another; a server that cannot be
   * reached or answers badly (502) is not asked again for its other invitees, so a room with
   * many users of a dead server costs one invite timeout, not one each. A failure costs only
   * that server's invites: they wrote nothing and are logged; the room and the rest stand.
   */
  async #inviteRemote(roomId: string, request: CreateRoomRequest, invitees: string[]) {
    const byServer = new Map<string, string[]>();
    for (const user of invitees) {
      const server = user.slice(user.indexOf(":") + 1);
      byServer.set(server, [...(byServer.get(server) ?? []), user]);
    }
    await mapLimited([...byServer.values()], REMOTE_INVITE_SERVERS_AT_ONCE, async (users) => {
      let unreachable: string | undefined;
      for (const user of users) {
        if (unreachable !== undefined) {
          this.#logFailure(roomId, user, `not tried: ${unreachable}`);
          continue;
        }
        try {
          await this.#membership.invite(request.creator, roomId, user, {
            isDirect: request.isDirect,
          });
        } catch (error) {
          const reason = error instanceof MatrixError
            ? `${error.errcode} ${error.status}: ${error.message}`
            : String(error);
          this.#logFailure(roomId, user, reason);
          if (error instanceof MatrixError && error.status === 502) unreachable = reason;
        }
      }
    });
  }

  #logFailure(roomId: string, invitee: string, reason: string): void {
    this.#log("createRoom: invite failed, the room stands without it", {
      roomId,
      invitee,
      reason,
    });
  }

  /** Validate a request and plan its events; throws the Matrix error a client should get. */
  async plan(request: CreateRoomRequest): Promise<RoomPlan> {
    const { creator, serverName } = { creator: request.creator, serverName: this.deps.serverName };
    const versionId = request.roomVersion ?? this.deps.defaultRoomVersion ?? DEFAULT_ROOM_VERSION;
    const version = roomVersion(versionId);
    if (!version) throw unsupportedRoomVersion(versionId);
    const preset: RoomPreset = request.preset ??
      (request.visibility === "public" ? "public_chat" : "private_chat");

    const invitees = [...new Set(request.invite ?? [])].filter((u) => u !== creator);
    for (const user of invitees) {
      if (!isValidUserId(user)) throw invalidParam(`Invalid user ID ${JSON.stringify(user)}`);
      // Without federation a remote invite could never be made: refuse the room before it is.
      const federates = this.deps.remoteMembership && !this.deps.federationDisabled;
      if (!isLocal(user, serverName) && !federates) {
        throw remoteInviteUnsupported(user);
      }
    }
    // The invitees' caps on pending invites, before anything is written.
    for (const user of invitees) await checkPendingInvites(this.deps.store, user, undefined);

    let alias: string | undefined;
    if (request.roomAliasName !== undefined) {
      alias = `#${request.roomAliasName}:${serverName}`;
      if (/[:\s]/.test(request.roomAliasName) || !parseRoomAlias(alias).ok) {
        throw invalidParam(`Invalid room alias name ${JSON.stringify(request.roomAliasName)}`);
      }
      if (await this.deps.directory.resolveAlias(alias)) throw roomInUse(alias);
    }

    const createContent: JsonObject = { ...request.creationContent };
    delete createContent.creator;
    delete createContent.room_version;
    if (version.privilegedCreators) {
      const additional = createContent.additional_creators ?? [];
      if (!Array.isArray(additional) || !additional.every((u) => typeof u === "string")) {
        throw invalidParam("creation_content.additional_creators must be a list of user IDs");
      }
      const creators = new Set(additional as string[]);
      if (preset === "trusted_private_chat") { for (const u of invitees) creators.add(u); }
      creators.delete(creator);
      for (const u of creators) {
        if (!isValidUserId(u)) throw invalidParam(`Invalid user ID ${JSON.stringify(u)}`);
      }
      if (creators.size > 0) createContent.additional_creators = [...creators];
      else delete createContent.additional_creators;
    }
    const creators = new Set<string>([
      creator,
      ...((createContent.additional_creators ?? []) as string[]),
    ]);

    // initial_state: later entries win; a power levels entry replaces the default ones.
    const initial = new Map<string, InitialStateEvent>();
    for (const e of request.initialState ?? []) {
      if (e.type === "m.room.create" || e.type === "m.room.member") {
        throw invalidParam(`initial_state may not hold ${e.type} events`);
      }
      const stateKey = e.state_key ?? "";
      initial.set(JSON.stringify([e.type, stateKey]), {
        type: e.type,
        stateKey,
        content: e.content,
      });
    }
    const plKey = JSON.stringify(["m.room.power_levels", ""]);
    const powerContent: JsonObject = {
      ...(initial.get(plKey)?.content ?? defaultPowerLevels(version, creator, preset, invitees)),
      ...request.powerLevelContentOverride,
    };
    initial.delete(plKey);
    this.#checkPowerLevels(version, powerContent, creators);
    // An initial canonical alias (kept only without room_alias_name) can name no alias of the
    // new room, which has none yet: only its syntax decides between 400 errors.
    const initialCanonical = initial.get(JSON.stringify(["m.room.canonical_alias", ""]));
    if (initialCanonical && alias === undefined) {
      await new RoomAliases(this.deps).checkCanonicalAlias(
        NOT_YET_A_ROOM,
        initialCanonical.content,
      );
    }

    const events: PlannedEvent[] = [
      {
        type: "m.room.member",
        stateKey: creator,
        content: await memberContent(this.deps, creator, "join"),
      },
      { type: "m.room.power_levels", stateKey: "", content: powerContent },
    ];
    if (alias) {
      events.push({
        type: "m.room.canonical_alias",
        stateKey: "",
        content: { alias },
      });
    }
    const overridden = (type: string) =>
      (type === "m.room.name" && request.name !== undefined) ||
      (type === "m.room.topic" && request.topic !== undefined) ||
      (type === "m.room.canonical_alias" && alias !== undefined);
    for (const e of presetState(preset)) {
      if (!initial.has(JSON.stringify([e.type, e.stateKey]))) events.push(e);
    }
    for (const e of initial.values()) {
      if (!(e.stateKey === "" && overridden(e.type))) events.push(e);
    }
    if (request.name !== undefined) {
      events.push({ type: "m.room.name", stateKey: "", content: { name: request.name } });
    }
    if (request.topic !== undefined) {
      events.push({ type: "m.room.topic", stateKey: "", content: topicContent(request.topic) });
    }
    // Local invites first: a remote one is authorised here in its place after them.
    const localInvitees = invitees.filter((u) => isLocal(u, serverName));
    const remoteInvitees = invitees.filter((u) => !isLocal(u, serverName));
    const extra: JsonObject = request.isDirect ? { is_direct: true } : {};
    for (const user of localInvitees) {
      events.push({
        type: "m.room.member",
        stateKey: user,
        content: await memberContent(this.deps, user, "invite", extra),
      });
    }
    const remoteInvites: PlannedEvent[] = [];
    for (const user of remoteInvitees) {
      remoteInvites.push({
        type: "m.room.member",
        stateKey: user,
        content: await memberContent(this.deps, user, "invite", extra),
      });
    }
    const checked = [...events, ...remoteInvites];
    this.#checkCreatorMaySend(version, powerContent, creators, creator, checked.slice(2));
    await checkRoomCreation({
      version,
      creator,
      serverName,
      createContent,
      events: checked,
      now: Date.now(),
    });
    // Published with the last event, so a room whose sends failed midway is not listed.
    if (request.visibility === "public") {
      events[events.length - 1].extraMutations = (roomId) =>
        this.deps.directory.visibilityMutations(roomId, "public");
    }
    const createMutations = alias === undefined
      ? undefined
      : (roomId: string) => this.deps.directory.createAliasMutations({ alias, roomId, creator });
    return { version, createContent, events, alias, createMutations, remoteInvitees };
  }

  /** v12 creators may not be listed in `users`; v10+ levels must be integers. */
  #checkPowerLevels(version: RoomVersion, content: JsonObject, creators: Set<string>): void {
    const users = content.users;
    if (
      users !== undefined && (typeof users !== "object" || users === null || Array.isArray(users))
    ) {
      throw invalidRoomState("power_levels.users must be an object");
    }
    if (version.privilegedCreators && users) {
      for (const user of Object.keys(users)) {
        if (creators.has(user)) {
          throw invalidRoomState(`Room creator ${user} may not be listed in power_levels.users`);
        }
      }
    }
  }

  /**
   * Refuse up front what the auth rules would refuse later, so no half-made room is left: the
   * creator must be allowed to send every state event and invite under the room's levels.
   */
  #checkCreatorMaySend(
    version: RoomVersion,
    powerContent: JsonObject,
    creators: Set<string>,
    creator: string,
    events: InitialStateEvent[],
  ): void {
    if (version.privilegedCreators && creators.has(creator)) return;
    let levels = parsePowerLevels(powerContent, version);
    for (const event of events) {
      const own = levels.users.get(creator) ?? levels.usersDefault;
      const needed = event.type === "m.room.member"
        ? levels.invite
        : levels.events.get(event.type) ?? levels.stateDefault;
      if (own < needed) {
        throw invalidRoomState(
          `The creator's power level (${own}) is below the ${needed} needed for ${event.type}`,
        );
      }
      if (event.type === "m.room.power_levels") levels = parsePowerLevels(event.content, version);
    }
  }

  #send(roomId: string, sender: string, event: PlannedEvent) {
    return this.deps.sender.send({
      roomId,
      sender,
      type: event.type,
      stateKey: event.stateKey,
      content: event.content,
      extraMutations: event.extraMutations ? () => event.extraMutations!(roomId) : undefined,
    });
  }
}

/** No room's ID: an alias checked against it points elsewhere whatever it names. */
const NOT_YET_A_ROOM = "";

/** Topic content with the plain text and its `m.topic` form (MSC3765, spec v1.15). */
function topicContent(topic: string): JsonObject {
  return { topic, "m.topic": { "m.text": [{ body: topic, mimetype: "text/plain" }] } };
}
