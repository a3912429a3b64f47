/** Rooms for user-data tests, built straight through the server's sender (no room routes needed). */
import type { LocalEventSender } from "../../domain/local_event_sender.ts";

/** Create a public room with `creator` joined, then join each of `others`. */
export async function publicRoomWith(
  sender: LocalEventSender,
  creator: string,
  others: string[] = [],
): Promise<string> {
  const { roomId } = await sender.createRoom({ version: "10", creator });
  const send = (senderId: string, type: string, content: Record<string, unknown>, key = "") =>
    sender.send({ roomId, sender: senderId, type, stateKey: key, content: content as never });
  await send(creator, "m.room.member", { membership: "join" }, creator);
  await send(creator, "m.room.power_levels", { users: { [creator]: 100 } });
  await send(creator, "m.room.join_rules", { join_rule: "public" });
  for (const user of others) await send(user, "m.room.member", { membership: "join" }, user);
  return roomId;
}
