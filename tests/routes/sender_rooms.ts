/**
 * Rooms built straight on the server's local sender, for route tests that need a room's events in
 * place without going through createRoom: a public room, membership changes and messages.
 */
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { startTestServer } from "./test_server.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** A public room created by `creator` (v12 lists no creator in power levels). */
export async function publicRoom(
  server: Server,
  creator: string,
  version = "10",
): Promise<string> {
  const { sender } = server.deps;
  const { roomId } = await sender.createRoom({ version, creator });
  const send = (type: string, content: JsonObject, stateKey = "") =>
    sender.send({ roomId, sender: creator, type, stateKey, content });
  await send("m.room.member", { membership: "join" }, creator);
  await send("m.room.power_levels", { users: version === "12" ? {} : { [creator]: 100 } });
  await send("m.room.join_rules", { join_rule: "public" });
  return roomId;
}

/** Set `userId`'s membership, sent by `by` (the user themself unless given). */
export function member(
  server: Server,
  roomId: string,
  userId: string,
  membership: string,
  by = userId,
) {
  return server.deps.sender.send({
    roomId,
    sender: by,
    type: "m.room.member",
    stateKey: userId,
    content: { membership },
  });
}

/** A text message from `userId`. */
export function say(server: Server, roomId: string, userId: string, body: string) {
  return server.deps.sender.send({
    roomId,
    sender: userId,
    type: "m.room.message",
    content: { msgtype: "m.text", body },
  });
}
