/**
 * Wiring of the rooms area (creation, membership, aliases, directory, upgrades) over KV;
 * `assembleServer` in main.ts calls it.
 */
import type { LocalEventSender } from "./domain/local_event_sender.ts";
import type { EventStore } from "./domain/ports/event_store.ts";
import type { RoomDirectoryStore } from "./domain/ports/room_directory_store.ts";
import type { ProfileReader } from "./domain/profile/profile_service.ts";
import { Rooms } from "./domain/rooms/rooms.ts";
import { KvRoomDirectoryStore } from "./kv/room_directory_store.ts";

/** The rooms services AppDeps carries. */
export interface RoomsServices {
  rooms: Rooms;
  /** Aliases, published rooms and forgotten rooms (sync reads `isForgotten`). */
  roomDirectory: RoomDirectoryStore;
}

/** Build the rooms services. */
export function assembleRooms(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  sender: LocalEventSender;
  profiles?: ProfileReader;
}): RoomsServices {
  const roomDirectory = new KvRoomDirectoryStore(options.kv);
  const rooms = new Rooms({
    store: options.eventStore,
    sender: options.sender,
    directory: roomDirectory,
    serverName: options.serverName,
    profile: options.profiles ? (userId) => options.profiles!.profile(userId) : undefined,
  });
  return { rooms, roomDirectory };
}
