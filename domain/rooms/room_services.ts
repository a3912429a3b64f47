/** What the rooms and membership use cases are built from, shared by their services. */
import type { JsonObject } from "../protocol/json.ts";
import type { LocalEventSender } from "../local_event_sender.ts";
import type { EventStore } from "../ports/event_store.ts";
import type { RoomDirectoryStore } from "../ports/room_directory_store.ts";
import { MatrixError } from "../errors.ts";
import type { Pdu } from "../protocol/events.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";

/** A user's displayname and avatar for their member events; null when unknown. */
export type MemberProfileLookup = (
  userId: string,
) => Promise<{ displayname?: string; avatar_url?: string } | null>;

/** The services rooms and membership depend on. */
export interface RoomServiceDeps {
  store: EventStore;
  sender: LocalEventSender;
  directory: RoomDirectoryStore;
  serverName: string;
  /** Profile fields for member events; without it member events carry none. */
  profile?: MemberProfileLookup;
  /** Whether a local user is a guest account (guest_access.ts); without it nobody is. */
  isGuest?: (userId: string) => Promise<boolean>;
  /** The version of new rooms whose creator names none; without it DEFAULT_ROOM_VERSION. */
  defaultRoomVersion?: string;
  /** After an upgrade: carry each local member's own data (m.direct, tags) to the new room. */
  copyUserDataOnUpgrade?: (userId: string, oldRoomId: string, newRoomId: string) => Promise<void>;
  /**
   * Invites of remote users, and leaves and knocks in rooms this server is not in
   * (domain/federation/remote_membership.ts); without it remote invites are refused (403).
   */
  remoteMembership?: RemoteMembershipActions;
  /**
   * `TESSERA_FEDERATION=off`: no invite can reach another server, so `/createRoom` refuses
   * remote invitees up front (403) instead of making a room whose invites all fail.
   */
  federationDisabled?: boolean;
  /** Joining rooms this server is not in (domain/federation/remote_join.ts); without it 404. */
  remoteJoin?: RemoteJoinService;
}

/** Joins of rooms held by other servers, as MembershipService needs them. */
export interface RemoteJoinService {
  /** A remote alias's room and the servers its server names (query/directory); 404 if unknown. */
  resolveAlias(alias: string): Promise<{ roomId: string; servers: string[] }>;
  /** Join through the first of `servers` that lets us; resolves to the join event's ID. */
  join(request: {
    userId: string;
    roomId: string;
    servers: readonly string[];
    content?: JsonObject;
  }): Promise<string>;
}

/** The memberships over federation MembershipService uses, besides joins. */
export interface RemoteMembershipActions {
  /** The invitee's server signs an invite of its user (the local sender's countersign step). */
  countersignInvite(
    target: string,
    event: { eventId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<Pdu>;
  /** Reject a remote invite or withdraw a remote knock. */
  leave(userId: string, roomId: string, reason?: string): Promise<void>;
  /** Knock on a room this server is not in, through the first of `servers` that lets us. */
  knock(
    userId: string,
    roomId: string,
    servers: readonly string[],
    content: JsonObject,
  ): Promise<void>;
  /** The user's membership in a room known only from another server, if any. */
  held(userId: string, roomId: string): Promise<string | undefined>;
}

/** Member event content; joins, invites and knocks carry the user's profile when known. */
export async function memberContent(
  deps: RoomServiceDeps,
  userId: string,
  membership: string,
  extra: JsonObject = {},
): Promise<JsonObject> {
  const content: JsonObject = { membership };
  if (membership === "leave" || membership === "ban") return { ...content, ...extra };
  const profile = await deps.profile?.(userId);
  if (typeof profile?.displayname === "string") content.displayname = profile.displayname;
  if (typeof profile?.avatar_url === "string") content.avatar_url = profile.avatar_url;
  return { ...content, ...extra };
}

/** Whether `id` (a user ID, alias or room ID with a server part) belongs to this server. */
export function isLocal(id: string, serverName: string): boolean {
  return id.slice(id.indexOf(":") + 1) === serverName;
}

/** Remote rooms and aliases need federation, which this server does not do yet: 404. */
export function remoteRoomUnsupported(what: string): MatrixError {
  return new MatrixError(
    "M_NOT_FOUND",
    404,
    `${what} is not on this server, and joining rooms over federation is not supported yet`,
  );
}

/** Inviting a remote user needs federation: 403, since nothing can be done about it here. */
export function remoteInviteUnsupported(userId: string): MatrixError {
  return new MatrixError(
    "M_FORBIDDEN",
    403,
    `${userId} is on another server, and this server does not federate`,
  );
}
