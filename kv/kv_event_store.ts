/** The Deno KV implementation of the EventStore port, assembled from the kv/ pieces. */
import type { StateKey, StateMap } from "../domain/protocol/events.ts";
import type {
  AppendRequest,
  AppendResult,
  Direction,
  EventStore,
  FoundEvent,
  Membership,
  NewEvent,
  RoomChanges,
  RoomHeadView,
  StagedState,
  StoredEvent,
  SyncChanges,
  TimelinePage,
} from "../domain/ports/event_store.ts";
import { OUTLIER_POSITION } from "../domain/ports/event_store.ts";
import { EventLog } from "./event_log.ts";
import { findEvents, readOutliers, storeOutliers } from "./outlier_store.ts";
import { readIsServerInRoom, readServersInRoom } from "./room_servers.ts";
import { readBackwardExtremities } from "./backward_extremities.ts";
import { stageState } from "./staged_state.ts";
import { readStoredEvent, readStoredEvents } from "./event_reads.ts";
import {
  readCurrentState,
  readCurrentStateEventId,
  readCurrentStateEventIds,
  readMembers,
  readRoomHead,
  readRoomsOfUser,
  readStateAfterEvents,
  readStateAtEvent,
} from "./state_reads.ts";
import {
  createStoreContext,
  type StoreContext,
  type StoreContextOptions,
} from "./store_context.ts";
import { readRoomChanges, readSyncChanges, takeSyncBarrier } from "./sync_reads.ts";
import { readTimeline } from "./timeline_reads.ts";
import { readRedactions } from "./redaction_reads.ts";
import { timelineToken } from "./stream_tokens.ts";

/** Event store over one Deno KV database (optionally under a key namespace). */
export class KvEventStore implements EventStore {
  readonly ctx: StoreContext;
  readonly #log: EventLog;

  /**
   * `options.resolver` is the state resolution run where forks meet, `options.authorizer` the
   * auth rules of `checkState` (defaults: the real ones).
   */
  constructor(kv: Deno.Kv, options: StoreContextOptions = {}) {
    this.ctx = createStoreContext(kv, options);
    this.#log = new EventLog(this.ctx);
  }

  /** See EventWriter.append. */
  append(request: AppendRequest): Promise<AppendResult> {
    return this.#log.append(request);
  }

  /** See EventWriter.onRoomAppended. */
  onRoomAppended(listener: (roomId: string, versionstamp: string) => void): () => void {
    return this.#log.onRoomAppended(listener);
  }

  /** See EventReader.getEvent. */
  async getEvent(eventId: string): Promise<StoredEvent | null> {
    const logged = await readStoredEvent(this.ctx, eventId);
    if (logged) return logged;
    const outlier = (await readOutliers(this.ctx, [eventId])).get(eventId);
    return outlier ? outlierAsStored(outlier) : null;
  }

  /** See EventReader.getEvents. */
  async getEvents(eventIds: readonly string[]): Promise<Map<string, StoredEvent>> {
    const found = await readStoredEvents(this.ctx, eventIds);
    // Only IDs no log holds cost a second read: the state of a room joined over federation
    // (its events from before the join are outliers), or events that are unknown.
    const rest = eventIds.filter((id) => !found.has(id));
    if (rest.length > 0) {
      for (const [id, e] of await readOutliers(this.ctx, rest)) found.set(id, outlierAsStored(e));
    }
    return found;
  }

  /** See EventReader.roomHead. */
  roomHead(roomId: string): Promise<RoomHeadView | null> {
    return readRoomHead(this.ctx, roomId);
  }

  /** See EventReader.currentState. */
  currentState(roomId: string): Promise<StateMap> {
    return readCurrentState(this.ctx, roomId);
  }

  /** See EventReader.currentStateEventId. */
  currentStateEventId(roomId: string, type: string, stateKey: string): Promise<string | null> {
    return readCurrentStateEventId(this.ctx, roomId, type, stateKey);
  }

  /** See EventReader.currentStateEventIds. */
  currentStateEventIds(roomId: string, keys: readonly StateKey[]): Promise<StateMap> {
    return readCurrentStateEventIds(this.ctx, roomId, keys);
  }

  /** See EventReader.stateAtEvent. */
  stateAtEvent(eventId: string, at: "before" | "after"): Promise<StateMap | null> {
    return readStateAtEvent(this.ctx, eventId, at);
  }

  /** See EventReader.stateAfterEvents. */
  stateAfterEvents(roomId: string, eventIds: readonly string[]): Promise<StateMap> {
    return readStateAfterEvents(this.ctx, roomId, eventIds);
  }

  /** See EventReader.redactionsOf. */
  redactionsOf(roomId: string, eventIds: readonly string[]): Promise<Map<string, string[]>> {
    return readRedactions(this.ctx, roomId, eventIds);
  }

  /** See EventReader.members. */
  members(roomId: string, memberships?: readonly string[]): Promise<Membership[]> {
    return readMembers(this.ctx, roomId, memberships);
  }

  /** See EventReader.roomsOfUser. */
  roomsOfUser(userId: string, memberships?: readonly string[]): Promise<Membership[]> {
    return readRoomsOfUser(this.ctx, userId, memberships);
  }

  /** See EventReader.serversInRoom. */
  serversInRoom(roomId: string): Promise<Map<string, number>> {
    return readServersInRoom(this.ctx, roomId);
  }

  /** See EventReader.isServerInRoom. */
  isServerInRoom(roomId: string, serverName: string): Promise<boolean> {
    return readIsServerInRoom(this.ctx, roomId, serverName);
  }

  /** See EventReader.backwardExtremities. */
  backwardExtremities(roomId: string): Promise<Map<string, number>> {
    return readBackwardExtremities(this.ctx, roomId);
  }

  /** See EventReader.timeline. */
  timeline(
    roomId: string,
    options: { from?: string; to?: string; dir: Direction; limit: number },
  ): Promise<TimelinePage> {
    return readTimeline(this.ctx, roomId, options);
  }

  /** See EventReader.timelineTokenAt. */
  timelineTokenAt(position: number): string {
    return timelineToken(position);
  }

  /** See RemoteEventStore.stageState. */
  stageState(roomId: string, roomVersion: string, state: StateMap): Promise<StagedState> {
    return stageState(this.ctx, roomId, roomVersion, state);
  }

  /** See RemoteEventStore.storeOutliers. */
  storeOutliers(roomId: string, events: NewEvent[]): Promise<void> {
    return storeOutliers(this.ctx, roomId, events);
  }

  /** See RemoteEventStore.findEvents. */
  findEvents(eventIds: readonly string[]): Promise<Map<string, FoundEvent>> {
    return findEvents(this.ctx, eventIds);
  }

  /** See SyncReader.syncBarrier. */
  syncBarrier(userId: string): Promise<string> {
    return takeSyncBarrier(this.ctx, userId);
  }

  /** See SyncReader.roomChanges. */
  roomChanges(
    options: { roomIds: readonly string[]; since?: string; upTo: string; limit: number },
  ): Promise<RoomChanges[]> {
    return readRoomChanges(this.ctx, options);
  }

  /** See SyncReader.syncChanges. */
  syncChanges(
    options: { userId: string; since?: string; limit: number; roomIds?: readonly string[] },
  ): Promise<SyncChanges> {
    return readSyncChanges(this.ctx, options);
  }
}

/**
 * An outlier as EventReader hands it out: it has no place in a log, so it sorts before every
 * position and its versionstamp before every commit (no sync window or timeline token ever
 * reaches it). It is what the state of a room joined over federation refers to.
 */
function outlierAsStored(event: FoundEvent): StoredEvent {
  return {
    eventId: event.eventId,
    roomId: event.roomId,
    pdu: event.pdu,
    status: event.status,
    position: OUTLIER_POSITION,
    versionstamp: "0".repeat(20),
  };
}
