/**
 * The bound on invites other servers may leave with one of our users: each is a record of up to
 * 512 KiB that every sync of the user lists, so a hostile server could otherwise bury a user
 * under them. Over the cap an invite is refused with 403 M_FORBIDDEN (the only refusal the spec
 * gives `PUT /invite`; the inviting server passes it to its user), and nothing is written.
 */
import type { EventStore } from "../ports/event_store.ts";
import type { RemoteMembershipLimits } from "../ports/remote_membership_store.ts";

/** Most invites from other servers a user may hold unanswered (Synapse has no such cap). */
export const MAX_OPEN_REMOTE_INVITES = 100;

/**
 * The limits an inbound invite for `userId` is recorded under. An invite record stays `invite`
 * after the user joins through it (the room's own log holds the join), so rooms where the user
 * has a membership of the room's own (joined, left, banned) are not counted as open.
 */
export async function remoteInviteLimits(
  store: Pick<EventStore, "roomsOfUser">,
  userId: string,
  maxOpenInvites = MAX_OPEN_REMOTE_INVITES,
): Promise<RemoteMembershipLimits> {
  const local = await store.roomsOfUser(userId, ["join", "leave", "ban"]);
  return { maxOpenInvites, settledRooms: new Set(local.map((m) => m.roomId)) };
}
