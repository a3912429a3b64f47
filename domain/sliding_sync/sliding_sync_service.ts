/**
 * Simplified sliding sync (MSC4186): one request of a connection. Resolve its `pos` against the
 * connection's head (connection.ts), take the sync barrier, compute the lists (room_list.ts),
 * build each room of the lists' ranges and the room subscriptions, initial or incremental
 * after what the connection sent of it (room_data.ts), run the extensions (extensions.ts),
 * and, when nothing is new and the client asked to wait, long-poll exactly as /sync does:
 * the watch is registered before the read, `wakeAfter` subscribes to other processes' commits
 * after the position the read covered, and a woken read may skip the barrier.
 * The new position and the rooms it sent are saved before the answer leaves.
 */
import { MatrixError } from "../errors.ts";
import type { EventStore } from "../ports/event_store.ts";
import type {
  ConnectionKey,
  SlidingConnectionStore,
} from "../ports/sliding_sync_connection_store.ts";
import type { SyncNotifier } from "../sync/sync_notifier.ts";
import { MAX_SYNC_TIMEOUT_MS } from "../sync/sync_service.ts";
import { longPoll } from "../sync/long_poll.ts";
import { syncTokenVersionstamp } from "../sync/sync_token.ts";
import {
  childOf,
  configKey,
  effectiveRoom,
  encodePos,
  type ResolvedPosition,
  resolvePosition,
  type RoomEntry,
  type SentRoom,
  stampRoom,
  withIssued,
} from "./connection.ts";
import {
  type ExtensionContext,
  type ExtensionRoom,
  type ExtensionsRequest,
  type ExtensionsResponse,
  hasExtensionNews,
} from "./extensions.ts";
import { mergeRoomConfigs, type RoomConfig } from "./room_config.ts";
import type { RoomDataBuilderApi, SlidingRoomResponse } from "./room_data.ts";
import {
  type CandidateRoom,
  computeLists,
  type RoomListSource,
  type SlidingRoomFilters,
} from "./room_list.ts";

/** Most sticky room subscriptions a connection keeps; past it the oldest are dropped. */
export const MAX_STICKY_SUBSCRIPTIONS = 1_000;
/** Times a save is retried after another request of the connection saved first. */
const SAVE_ATTEMPTS = 5;

/** One list of a request, validated. */
export interface SlidingListRequest {
  ranges: [number, number][];
  filters?: SlidingRoomFilters;
  config: RoomConfig;
}

/** One sliding-sync request, validated at the edge. */
export interface SlidingSyncRequest {
  userId: string;
  deviceId: string;
  /** The client's `conn_id`; "" when absent. */
  connId: string;
  pos?: string;
  timeoutMs: number;
  lists: Record<string, SlidingListRequest>;
  /** New room subscriptions (sticky: kept on the connection until unsubscribed). */
  roomSubscriptions: Record<string, RoomConfig>;
  unsubscribeRooms: string[];
  extensions?: ExtensionsRequest;
  setPresence?: string;
  /** Aborted when the client goes away; asked for only when about to wait (see SyncParams). */
  clientGone?: () => AbortSignal;
}

/** The answer (MSC4186 response body). */
export interface SlidingSyncResponse {
  pos: string;
  lists: Record<string, { count: number }>;
  rooms: Record<string, SlidingRoomResponse>;
  extensions: ExtensionsResponse;
}

/** Builds the answer's extensions; main.ts binds `buildExtensions` to /sync's providers. */
export type ExtensionsBuilder = (
  request: ExtensionsRequest | undefined,
  ctx: ExtensionContext,
) => Promise<ExtensionsResponse>;

/** What the service reads and calls. */
export interface SlidingSyncDeps {
  store: Pick<EventStore, "syncBarrier" | "roomsOfUser">;
  notifier: SyncNotifier;
  connections: SlidingConnectionStore;
  roomList: RoomListSource;
  rooms: RoomDataBuilderApi;
  extensions: ExtensionsBuilder;
  /** The reader's ignore list, as the read pipeline reads it (ReadPipeline.ignoredUsers). */
  ignoredUsers(userId: string): Promise<ReadonlySet<string>>;
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
  now?: () => number;
}

/** One read's result, before it is saved. */
interface Answer {
  upTo: string;
  lists: Record<string, { count: number }>;
  listCounts: Record<string, number>;
  rooms: Record<string, SlidingRoomResponse>;
  extensions: ExtensionsResponse;
  /** What the connection now holds for each room this answer carried something of. */
  sent: Map<string, SentRoom>;
  hasNews: boolean;
}

/** The request's subscriptions after this request's changes, and their configs. */
interface Subscriptions {
  byRoom: Record<string, string>;
  configs: Record<string, RoomConfig>;
}

/** Runs sliding sync over the room lists, room data, extensions and connection store. */
export class SlidingSyncService {
  /** Over its dependencies. */
  constructor(private readonly deps: SlidingSyncDeps) {}

  /** Answer one request: at once when there is news (or no `pos`), else on news or at the timeout. */
  async sync(request: SlidingSyncRequest): Promise<SlidingSyncResponse> {
    const key: ConnectionKey = {
      userId: request.userId,
      deviceId: request.deviceId,
      connId: request.connId,
    };
    const loaded = request.pos === undefined
      ? undefined
      : await this.deps.connections.loadHead(key);
    const resolved = resolvePosition(loaded?.head, request.pos);
    const subscriptions = await this.#subscriptions(resolved, request);
    await this.deps.presence?.markFromSync(request.userId, request.setPresence);
    const answer = await this.#answer(request, resolved, subscriptions);
    // Nothing new and nothing to remember (a long-poll's timeout, the client gone, shutdown):
    // the client may carry on from the pos it sent, so no position is issued and nothing is
    // written. A js-sdk client aborts and resends its long-poll whenever its lists change.
    const unchanged = request.pos !== undefined && !resolved.isNew && !answer.hasNews &&
      answer.sent.size === 0 &&
      sameSubscriptions(resolved.base.subscriptions, subscriptions.byRoom);
    const pos = unchanged ? request.pos! : await this.#save(
      key,
      request,
      resolved,
      loaded?.version,
      subscriptions,
      answer,
    );
    return { pos, lists: answer.lists, rooms: answer.rooms, extensions: answer.extensions };
  }

  /** Read, and long-poll while there is nothing new (MSC4186: `timeout` only with a `pos`). */
  async #answer(
    request: SlidingSyncRequest,
    resolved: ResolvedPosition,
    subscriptions: Subscriptions,
  ): Promise<Answer> {
    const now = () => this.deps.now?.() ?? Date.now();
    const timeout = Math.max(0, Math.min(request.timeoutMs, MAX_SYNC_TIMEOUT_MS));
    const deadline = now() + timeout;
    if (resolved.isNew || timeout === 0) {
      return await this.#read(request, resolved, subscriptions);
    }
    // /sync's loop: a woken read may skip the barrier (this read needs no memberships).
    return await longPoll({
      store: this.deps.store,
      notifier: this.deps.notifier,
      userId: request.userId,
      deadline,
      now,
      clientGone: request.clientGone,
      read: async (upTo) => {
        const answer = await this.#read(request, resolved, subscriptions, upTo);
        return { value: answer, upTo: answer.upTo, done: answer.hasNews };
      },
    });
  }

  /** The base position's subscriptions, minus `unsubscribe_rooms`, plus the new ones. */
  async #subscriptions(
    resolved: ResolvedPosition,
    request: SlidingSyncRequest,
  ): Promise<Subscriptions> {
    const byRoom: Record<string, string> = { ...resolved.base.subscriptions };
    const configs: Record<string, RoomConfig> = {};
    for (const roomId of request.unsubscribeRooms) delete byRoom[roomId];
    for (const [roomId, config] of Object.entries(request.roomSubscriptions)) {
      const merged = mergeRoomConfigs([config]);
      const key = await configKey(merged);
      // Re-inserted, so a renewed subscription counts as the newest when trimming.
      delete byRoom[roomId];
      byRoom[roomId] = key;
      configs[key] = merged;
    }
    const roomIds = Object.keys(byRoom);
    for (const roomId of roomIds.slice(0, Math.max(0, roomIds.length - MAX_STICKY_SUBSCRIPTIONS))) {
      delete byRoom[roomId];
    }
    for (const key of Object.values(byRoom)) {
      if (!configs[key] && resolved.head.configs[key]) configs[key] = resolved.head.configs[key];
    }
    return { byRoom, configs };
  }

  /** One pass: barrier (unless woken), lists, rooms, extensions. */
  async #read(
    request: SlidingSyncRequest,
    resolved: ResolvedPosition,
    subscriptions: Subscriptions,
    knownUpTo?: string,
  ): Promise<Answer> {
    const { head, base } = resolved;
    const upTo = knownUpTo ?? await this.deps.store.syncBarrier(request.userId);
    const previous = resolved.isNew ? undefined : base.token;
    // Read once for the lists (an ignored user's invite is not listed) and every room.
    const ignored = await this.deps.ignoredUsers(request.userId);
    const computed = await computeLists(
      this.deps.roomList,
      request.userId,
      request.lists,
      previous === undefined ? undefined : syncTokenVersionstamp(previous),
      // Subscribed rooms may be sent outside any range: they need their bump stamps too.
      Object.keys(subscriptions.byRoom),
      ignored,
    );
    const candidates = new Map<string, CandidateRoom>(computed.rooms.map((r) => [r.roomId, r]));

    // Each room's configs: one per list range holding it, one per subscription.
    const configs = new Map<string, RoomConfig[]>();
    const addConfig = (roomId: string, config: RoomConfig) => {
      const list = configs.get(roomId);
      if (list) list.push(config);
      else configs.set(roomId, [config]);
    };
    const lists: Record<string, { count: number }> = {};
    const listCounts: Record<string, number> = {};
    const listRooms: Record<string, string[]> = {};
    for (const [name, list] of Object.entries(computed.lists)) {
      lists[name] = { count: list.count };
      listCounts[name] = list.count;
      const ids = [...new Set(list.ranges.flatMap((r) => r.roomIds))];
      listRooms[name] = ids;
      for (const roomId of ids) addConfig(roomId, request.lists[name].config);
    }
    // A subscription to a room the user has no membership in is ignored (MSC4186).
    const subscribed = Object.keys(subscriptions.byRoom).filter((id) => candidates.has(id));
    for (const roomId of subscribed) {
      const config = subscriptions.configs[subscriptions.byRoom[roomId]];
      if (config) addConfig(roomId, config);
    }

    const roomIds = [...configs.keys()];
    const entries = await this.deps.connections.roomEntries(
      { userId: request.userId, deviceId: request.deviceId, connId: request.connId },
      roomIds,
    );
    // Most rooms share a few configs (one per list): hash each distinct one once.
    const keys = new Map<string, Promise<string>>();
    const plans = await Promise.all(roomIds.map(async (roomId) => {
      const merged = mergeRoomConfigs(configs.get(roomId)!);
      const text = JSON.stringify(merged);
      let hashed = keys.get(text);
      if (!hashed) keys.set(text, hashed = configKey(merged));
      const key = await hashed;
      const held = effectiveRoom(head, base, entries.get(roomId));
      // Sent before with another config: sent again from scratch.
      const since = held !== null && held.config === key ? held.sentAt : undefined;
      return { roomId, merged, key, since };
    }));
    const built = await Promise.all(plans.map((plan) => {
      const candidate = candidates.get(plan.roomId)!;
      return this.deps.rooms.buildRoom({
        userId: request.userId,
        deviceId: request.deviceId,
        roomId: plan.roomId,
        config: plan.merged,
        since: plan.since,
        previousPos: previous,
        upTo,
        bumpStamp: candidate.bumpStamp,
        isDm: candidate.isDm,
        ignored,
      });
    }));

    const rooms: Record<string, SlidingRoomResponse> = {};
    const extensionRooms = new Map<string, ExtensionRoom>();
    plans.forEach((plan, i) => {
      const room = built[i];
      if (room) rooms[plan.roomId] = room;
      extensionRooms.set(plan.roomId, {
        membership: candidates.get(plan.roomId)!.membership,
        since: plan.since,
        timelineEventIds: plan.since === undefined ? timelineIds(room) : undefined,
      });
    });
    const extensions = await this.deps.extensions(request.extensions, {
      userId: request.userId,
      deviceId: request.deviceId,
      since: previous,
      upTo,
      lists: listRooms,
      subscriptions: subscribed,
      rooms: extensionRooms,
      now: this.deps.now?.() ?? Date.now(),
    });

    // The connection now holds up to `upTo` every room this answer carried something of; a
    // room with nothing new keeps its older position, as nothing changed in between.
    const sent = new Map<string, SentRoom>();
    const extensionRoomIds = roomsIn(extensions);
    for (const plan of plans) {
      if (rooms[plan.roomId] || extensionRoomIds.has(plan.roomId)) {
        sent.set(plan.roomId, { sentAt: upTo, config: plan.key });
      }
    }
    const countsChanged = !resolved.isNew &&
      (Object.keys(listCounts).length !== Object.keys(base.listCounts).length ||
        Object.entries(listCounts).some(([name, n]) => base.listCounts[name] !== n));
    const hasNews = Object.keys(rooms).length > 0 || hasExtensionNews(extensions) ||
      countsChanged;
    return { upTo, lists, listCounts, rooms, extensions, sent, hasNews };
  }

  /**
   * Issue the answer's position and record the rooms it sent. When another request of the
   * connection saved first (a retry racing this one), start again from the head it left: the
   * request's pos must still be valid there (else M_UNKNOWN_POS), and the room records are read
   * again so each keeps the right value as of that pos.
   */
  async #save(
    key: ConnectionKey,
    request: SlidingSyncRequest,
    resolved: ResolvedPosition,
    version: string | undefined,
    subscriptions: Subscriptions,
    answer: Answer,
  ): Promise<string> {
    let current: { resolved: ResolvedPosition; version: string | undefined } = {
      resolved,
      version,
    };
    const roomIds = [...answer.sent.keys()];
    let entries = roomIds.length === 0 || resolved.isNew
      ? new Map<string, RoomEntry>()
      : await this.deps.connections.roomEntries(key, roomIds);
    for (let attempt = 0; attempt < SAVE_ATTEMPTS; attempt++) {
      const { head, base } = current.resolved;
      const child = childOf(base, {
        token: answer.upTo,
        subscriptions: subscriptions.byRoom,
        listCounts: answer.listCounts,
      });
      const next = withIssued(head, child, subscriptions.configs);
      const stamped = new Map<string, RoomEntry>();
      for (const [roomId, sent] of answer.sent) {
        stamped.set(roomId, stampRoom(head, base, child, entries.get(roomId), sent));
      }
      if (await this.deps.connections.save(key, next, current.version, stamped)) {
        return encodePos(next.generation, child);
      }
      const reloaded = await this.deps.connections.loadHead(key);
      current = {
        resolved: resolvePosition(reloaded?.head, request.pos),
        version: reloaded?.version,
      };
      if (roomIds.length > 0) entries = await this.deps.connections.roomEntries(key, roomIds);
    }
    // Requests racing on one connection kept winning: a limit, not a server fault (no 500).
    throw new MatrixError(
      "M_LIMIT_EXCEEDED",
      429,
      "Too many concurrent requests on this connection",
      { retry_after_ms: 1_000 },
    );
  }
}

function sameSubscriptions(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((roomId) => a[roomId] === b[roomId]);
}

/** The timeline event IDs of an initial room entry (the receipts extension's scope). */
function timelineIds(room: SlidingRoomResponse | undefined): string[] | undefined {
  if (!room?.timeline) return undefined;
  return room.timeline.flatMap((e) => typeof e.event_id === "string" ? [e.event_id] : []);
}

/** Rooms an extension answer carries something for. */
function roomsIn(extensions: ExtensionsResponse): Set<string> {
  return new Set([
    ...Object.keys(extensions.account_data?.rooms ?? {}),
    ...Object.keys(extensions.receipts?.rooms ?? {}),
    ...Object.keys(extensions.typing?.rooms ?? {}),
  ]);
}
