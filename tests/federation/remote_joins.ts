/**
 * Remote members without a remote server: a user of another server joined to a local room by
 * appending their join, signed by their server's test key, straight through the store. For the
 * tests and benchmarks of what the room's remote members make a server do (the federation
 * sender's destinations, device-list EDUs), where running the join protocol is beside the point.
 */
import { buildEvent } from "../../domain/protocol/event_builder.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { EventStore } from "../../domain/ports/event_store.ts";
import type { TestServer } from "../domain/federation/remote_room_builder.ts";

/**
 * Append `userId`'s join, built and signed by its own `server` on the room's head, as a remote
 * event would be stored (through the store, authorisation being the incoming pipeline's job);
 * its event ID.
 */
export async function appendRemoteJoin(
  store: EventStore,
  roomId: string,
  userId: string,
  server: TestServer,
): Promise<string> {
  const head = (await store.roomHead(roomId))!;
  const version = roomVersion(head.roomVersion)!;
  const prev = await store.getEvents(head.forwardExtremities);
  const state = await store.currentState(roomId);
  const built = await buildEvent({
    version,
    roomId,
    sender: userId,
    type: "m.room.member",
    stateKey: userId,
    content: { membership: "join" },
    prevEvents: [...prev.values()].map((e) => ({ eventId: e.eventId, depth: e.pdu.depth })),
    currentState: (key) => {
      const eventId = state.get(key);
      return eventId === undefined ? undefined : { eventId };
    },
    serverName: server.name,
    signingKey: server.key,
  });
  await store.append({
    roomId,
    events: [{ eventId: built.eventId, pdu: built.pdu, status: "accepted" }],
  });
  return built.eventId;
}
