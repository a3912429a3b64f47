/**
 * Memberships of local users in rooms this server is not in (map `userid_remotemembership`): an
 * invite received over federation, its rejection, a knock sent to another server and its
 * withdrawal. The room's log holds none of these events (the server has no copy of the room), so
 * sync reads them from here beside the membership projection, and the newer of the two wins.
 */
import type { Pdu } from "../protocol/events.ts";

/** A membership a local user has in a room known only from another server. */
export interface RemoteMembership {
  userId: string;
  roomId: string;
  /** `invite`, `leave` (a rejected invite or withdrawn knock) or `knock`. */
  membership: string;
  eventId: string;
  /**
   * The member event as held: an invite carries `unsigned.invite_room_state` and a knock
   * `unsigned.knock_room_state`, the room's stripped state for the client.
   */
  pdu: Pdu;
  roomVersion: string;
  /** Servers in the room that can answer make_leave (the inviter's, the ones knocked through). */
  servers: string[];
  /** Versionstamp of the commit that wrote the record: places it in sync windows. */
  versionstamp: string;
}

/** Limits a write of a remote membership is held to (domain/federation/remote_invite_quota.ts). */
export interface RemoteMembershipLimits {
  /**
   * Most open invites (records with membership `invite`, this one included) the user may hold;
   * over it the write is refused with 403 M_FORBIDDEN and nothing is written. Counted in the
   * same commit as the write, so concurrent invites cannot both take the last slot.
   */
  maxOpenInvites: number;
  /** Rooms whose invite records are no longer open (the user has a local membership there). */
  settledRooms: ReadonlySet<string>;
}

/** Reading and writing remote memberships. */
export interface RemoteMembershipStore {
  /**
   * Record (replace) the user's membership in the room; resolves to the commit's versionstamp.
   * Rejections and withdrawals older than the store's retention are dropped in the same commit.
   */
  record(
    membership: Omit<RemoteMembership, "versionstamp">,
    limits?: RemoteMembershipLimits,
  ): Promise<string>;
  /** The user's remote membership in the room, or null. */
  get(userId: string, roomId: string): Promise<RemoteMembership | null>;
  /** Every remote membership of the user (leaves past the store's retention left out). */
  ofUser(userId: string): Promise<RemoteMembership[]>;
}
