/**
 * Which servers share a room with a user: the destinations of what a user's own EDUs say about
 * them (presence, device-list updates, signing-key updates), which go to every server with a
 * member joined to a room the user is joined to, and nowhere else.
 */
import type { EventReader } from "../ports/event_store.ts";
import { mapLimited } from "../concurrency.ts";

/** Room reads in flight at once for one user (someone in thousands of rooms). */
const ROOM_READS_IN_FLIGHT = 16;

/**
 * The servers other than `ownServer` with a member joined to a room `userId` is joined to
 * (current state, read from KV on every call: the room servers projection, one read per room).
 */
export async function serversSharingRoomWith(
  store: Pick<EventReader, "roomsOfUser" | "serversInRoom">,
  userId: string,
  ownServer: string,
): Promise<Set<string>> {
  const rooms = await store.roomsOfUser(userId, ["join"]);
  const perRoom = await mapLimited(
    rooms,
    ROOM_READS_IN_FLIGHT,
    (room) => store.serversInRoom(room.roomId),
  );
  const servers = new Set<string>();
  for (const counts of perRoom) for (const server of counts.keys()) servers.add(server);
  servers.delete(ownServer);
  return servers;
}

/**
 * Whether `userId` (usually of another server) is joined to a room that `serverName` (usually
 * this one) has a member joined to: whether the two "share a room" for EDUs about that user.
 */
export async function userSharesRoomWithServer(
  store: Pick<EventReader, "roomsOfUser" | "isServerInRoom">,
  userId: string,
  serverName: string,
): Promise<boolean> {
  const rooms = await store.roomsOfUser(userId, ["join"]);
  for (const room of rooms) {
    if (await store.isServerInRoom(room.roomId, serverName)) return true;
  }
  return false;
}
