/**
 * A cap on the invites a user holds: each pending invite sits in every one of their syncs with
 * the room's stripped state, so invites are a way to fill someone else's sync. The rate limits
 * (per inviter and per invitee) slow that down; this bounds it. Synapse has only the rate
 * limits (rc_invites). The price: whoever fills a user's invites blocks new ones until the user
 * rejects some (and can ignore the sender), which is better than an unbounded sync.
 */
import { forbidden } from "../errors.ts";
import type { EventReader } from "../ports/event_store.ts";

/** Pending invites a user may hold; real users hold a handful. */
export const MAX_PENDING_INVITES = 200;

/**
 * Refuse (403 M_FORBIDDEN) an invite of `invitee` to `roomId` (undefined: a room not made yet)
 * when they hold the most pending invites already; an invite they already hold to this room
 * does not count as new.
 */
export async function checkPendingInvites(
  store: Pick<EventReader, "roomsOfUser">,
  invitee: string,
  roomId: string | undefined,
): Promise<void> {
  const pending = await store.roomsOfUser(invitee, ["invite"]);
  if (pending.length < MAX_PENDING_INVITES || pending.some((m) => m.roomId === roomId)) return;
  throw forbidden(
    `${invitee} has ${pending.length} pending invites, the most allowed; ` +
      "they must accept or reject some first",
  );
}
