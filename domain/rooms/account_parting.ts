/**
 * What deactivating an account does to its rooms (as Synapse does): leave every joined room,
 * reject every pending invite and withdraw every knock, each as the user's own `leave` member
 * event sent through the membership service, so it is authorised and appended like any other.
 */
import type { EventReader } from "../ports/event_store.ts";
import type { MembershipService } from "./membership.ts";

/** What parting needs. */
export interface AccountPartingDeps {
  store: Pick<EventReader, "roomsOfUser">;
  membership: Pick<MembershipService, "leave">;
}

/** Memberships a deactivated user must not keep. */
const PARTED_MEMBERSHIPS = ["join", "invite", "knock"] as const;

/**
 * Leave every room `userId` is joined to, invited to or knocking on. Idempotent: rooms already
 * left are not listed again. Every room is tried; the first failure is thrown afterwards, so the
 * caller knows to try again later.
 */
export async function partFromAllRooms(deps: AccountPartingDeps, userId: string): Promise<void> {
  const rooms = await deps.store.roomsOfUser(userId, PARTED_MEMBERSHIPS);
  let failure: unknown;
  for (const { roomId } of rooms) {
    try {
      await deps.membership.leave(userId, roomId);
    } catch (error) {
      console.error("deactivation: leaving a room failed", userId, roomId, error);
      failure ??= error;
    }
  }
  if (failure !== undefined) throw failure;
}
