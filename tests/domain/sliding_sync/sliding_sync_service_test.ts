/**
 * The sliding sync service over fakes (room list, room builder, extensions, an in-memory
 * connection store): which `since` each room is built from, as its config and the ranges move,
 * and which rooms the connection records after an answer.
 */
import { assertEquals } from "../../assert.ts";
import { MatrixError } from "../../../domain/errors.ts";
import { SlidingSyncService } from "../../../domain/sliding_sync/sliding_sync_service.ts";
import { SyncNotifier } from "../../../domain/sync/sync_notifier.ts";
import type {
  ConnectionKey,
  LoadedHead,
  SlidingConnectionStore,
} from "../../../domain/ports/sliding_sync_connection_store.ts";
import type { ConnectionHead, RoomEntry } from "../../../domain/sliding_sync/connection.ts";
import type { CandidateRoom, RoomListSource } from "../../../domain/sliding_sync/room_list.ts";
import type { BuildRoomParams } from "../../../domain/sliding_sync/room_data.ts";
import type { ExtensionContext } from "../../../domain/sliding_sync/extensions.ts";
import { roomConfig } from "../../../domain/sliding_sync/room_config.ts";

/** Connection records in memory, with versions like KV's. */
class MemoryConnections implements SlidingConnectionStore {
  heads = new Map<string, LoadedHead>();
  rooms = new Map<string, RoomEntry>();
  #version = 0;
  loadHead(key: ConnectionKey) {
    return Promise.resolve(structuredClone(this.heads.get(key.connId)));
  }
  roomEntries(_key: ConnectionKey, roomIds: readonly string[]) {
    const out = new Map<string, RoomEntry>();
    for (const id of roomIds) {
      if (this.rooms.has(id)) out.set(id, structuredClone(this.rooms.get(id)!));
    }
    return Promise.resolve(out);
  }
  save(
    key: ConnectionKey,
    head: ConnectionHead,
    expected: string | undefined,
    rooms: ReadonlyMap<string, RoomEntry>,
  ) {
    const current = this.heads.get(key.connId);
    if (expected !== undefined && current?.version !== expected) return Promise.resolve(false);
    this.heads.set(key.connId, { head: structuredClone(head), version: String(++this.#version) });
    for (const [id, entry] of rooms) this.rooms.set(id, structuredClone(entry));
    return Promise.resolve(true);
  }
}

function candidate(roomId: string, bumpStamp: number): CandidateRoom {
  return {
    roomId,
    membership: "join",
    membershipEventId: `$m${roomId}`,
    activity: bumpStamp,
    bumpStamp,
    membershipStamp: "00000000000000000001",
    isDm: false,
    isEncrypted: false,
    roomType: null,
  };
}

function setup(connections: SlidingConnectionStore = new MemoryConnections()) {
  let clock = 0;
  const token = () => `s${(++clock).toString(16).padStart(20, "0")}`;
  const bumps: Record<string, number> = { "!a": 3, "!b": 2, "!c": 1 };
  const roomList: RoomListSource = {
    candidateRooms: () => Promise.resolve(Object.entries(bumps).map(([id, n]) => candidate(id, n))),
    spaceChildren: () => Promise.resolve(new Set()),
    bumpStamps: () => Promise.resolve(),
  };
  const built: BuildRoomParams[] = [];
  const contexts: ExtensionContext[] = [];
  let typingIn: string[] = [];
  const service = new SlidingSyncService({
    store: { syncBarrier: () => Promise.resolve(token()), roomsOfUser: () => Promise.resolve([]) },
    notifier: new SyncNotifier(),
    connections,
    ignoredUsers: () => Promise.resolve(new Set<string>()),
    roomList,
    // Every room has something new: the service decides what `since` it is built from.
    rooms: {
      buildRoom: (params) => {
        built.push(params);
        return Promise.resolve(params.since === undefined ? { initial: true } : undefined);
      },
    },
    extensions: (_request, ctx) => {
      contexts.push(ctx);
      return Promise.resolve({
        typing: {
          rooms: Object.fromEntries(typingIn.map((id) => [id, { type: "m.typing", content: {} }])),
        },
      });
    },
  });
  return {
    service,
    bumps,
    built,
    contexts,
    setTyping: (ids: string[]) => void (typingIn = ids),
  };
}

const config = (limit: number) => roomConfig([["m.room.create", ""]], limit);
const request = (pos: string | undefined, ranges: [number, number][], limit = 1) => ({
  userId: "@u:x",
  deviceId: "D",
  connId: "",
  pos,
  timeoutMs: 0,
  lists: { l: { ranges, config: config(limit) } },
  roomSubscriptions: {},
  unsubscribeRooms: [],
});

Deno.test("rooms are built from what the connection holds: initial, then after their last sending", async () => {
  const t = setup();
  const first = await t.service.sync(request(undefined, [[0, 1]]));
  assertEquals(Object.keys(first.rooms).sort(), ["!a", "!b"]);
  t.built.length = 0;

  // Incremental: built from where each was sent; the builder finds nothing new.
  const second = await t.service.sync(request(first.pos, [[0, 1]]));
  assertEquals(second.rooms, {});
  const sentAt = new Map(t.built.map((p) => [p.roomId, p.since]));
  assertEquals(sentAt.get("!a") !== undefined && sentAt.get("!b") !== undefined, true);
  assertEquals(t.contexts.at(-1)!.rooms.get("!a")!.since, sentAt.get("!a"));
  assertEquals(second.pos, first.pos, "nothing new: the same pos");
  t.built.length = 0;

  // !c moves into the range: initial; !a, still held, incremental.
  t.bumps["!c"] = 9;
  const third = await t.service.sync(request(first.pos, [[0, 1]]));
  assertEquals(Object.keys(third.rooms), ["!c"]);
  assertEquals(t.built.find((p) => p.roomId === "!a")!.since, sentAt.get("!a"));
  t.built.length = 0;

  // A changed config sends the rooms again from scratch.
  const fourth = await t.service.sync(request(third.pos, [[0, 1]], 5));
  assertEquals(Object.keys(fourth.rooms).sort(), ["!a", "!c"]);
  t.built.length = 0;

  // !b comes back into the range, asked with the config it was sent with: built after where
  // it was sent (two answers ago), so it gets everything it missed meanwhile.
  t.bumps["!b"] = 99;
  await t.service.sync(request(fourth.pos, [[0, 1]]));
  assertEquals(t.built.find((p) => p.roomId === "!b")?.since, sentAt.get("!b"));
});

Deno.test("a room with only extension news is recorded as sent up to the answer", async () => {
  const t = setup();
  const first = await t.service.sync(request(undefined, [[0, 0]]));
  t.setTyping(["!a"]);
  const second = await t.service.sync(request(first.pos, [[0, 0]]));
  assertEquals(second.rooms, {});
  assertEquals(Object.keys(second.extensions.typing!.rooms), ["!a"]);
  const heldBefore = t.contexts.at(-1)!.rooms.get("!a")!.since;
  t.setTyping([]);
  await t.service.sync(request(second.pos, [[0, 0]]));
  const heldAfter = t.contexts.at(-1)!.rooms.get("!a")!.since;
  assertEquals(heldAfter! > heldBefore!, true, "the typing answer moved the room's position on");
});

/** A store where another request of the connection always saved first. */
class AlwaysRacedConnections extends MemoryConnections {
  override save() {
    return Promise.resolve(false);
  }
}

Deno.test("a save that keeps losing to racing requests is a 429, not a server error", async () => {
  const t = setup(new AlwaysRacedConnections());
  const error = await t.service.sync(request(undefined, [[0, 1]])).then(
    () => undefined,
    (e: unknown) => e,
  );
  assertEquals(error instanceof MatrixError, true, String(error));
  assertEquals((error as MatrixError).errcode, "M_LIMIT_EXCEEDED");
  assertEquals((error as MatrixError).status, 429);
});
