/**
 * A user's memberships in rooms this server is not in (remote invites, their rejections,
 * knocks; see ports/remote_membership_store.ts) as the readers of rooms see them: the member
 * event as a stored event, placed in the sync streams by the versionstamp of the commit that
 * recorded it. `/sync`, `/initialSync` and `/events` all show them beside the memberships of
 * the rooms this server holds, the newer of the two winning for a room.
 */
import type { StoredEvent } from "../ports/event_store.ts";
import type { RemoteMembership } from "../ports/remote_membership_store.ts";

/**
 * The remote membership's event as a stored one. It has no place in any log here (position 0);
 * its versionstamp is the record's, so it sorts with the commits of the sync streams.
 */
export function remoteMembershipEvent(m: RemoteMembership): StoredEvent {
  return {
    eventId: m.eventId,
    roomId: m.roomId,
    pdu: m.pdu,
    status: "accepted",
    position: 0,
    versionstamp: m.versionstamp,
  };
}

/**
 * Whether the remote membership replaces the membership of the room as this server holds it
 * (`local`, the user's member event there, if any): it does when it was recorded later (a
 * remote invite after an earlier stay; not an invite since accepted by joining).
 */
export function remoteMembershipWins(
  m: RemoteMembership,
  local: StoredEvent | undefined,
): boolean {
  return local === undefined || local.versionstamp < m.versionstamp;
}
