/** Small membership look-ups shared by the user-data services (typing, receipts, profiles, presence). */
import { forbidden } from "../errors.ts";
import type { EventReader } from "../ports/event_store.ts";

/** The user's current membership in a room ("join", "leave", ...); null when none. */
export async function membershipOf(
  events: Pick<EventReader, "currentStateEventId" | "getEvent">,
  roomId: string,
  userId: string,
): Promise<string | null> {
  const id = await events.currentStateEventId(roomId, "m.room.member", userId);
  if (id === null) return null;
  const event = await events.getEvent(id);
  const membership = event?.pdu.content.membership;
  return typeof membership === "string" ? membership : null;
}

/** Throw M_FORBIDDEN unless the user is joined to the room. */
export async function requireJoined(
  events: Pick<EventReader, "currentStateEventId" | "getEvent">,
  roomId: string,
  userId: string,
): Promise<void> {
  if (await membershipOf(events, roomId, userId) !== "join") {
    throw forbidden(`${userId} is not joined to ${roomId}`);
  }
}

/** Whether both users are joined to some room now (two reads of current membership). */
export async function sharesJoinedRoom(
  events: Pick<EventReader, "roomsOfUser">,
  a: string,
  b: string,
): Promise<boolean> {
  const [roomsOfA, roomsOfB] = await Promise.all([
    events.roomsOfUser(a, ["join"]),
    events.roomsOfUser(b, ["join"]),
  ]);
  const ids = new Set(roomsOfA.map((r) => r.roomId));
  return roomsOfB.some((r) => ids.has(r.roomId));
}
