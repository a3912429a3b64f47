/**
 * The storage port for sliding-sync connections (MSC4186): per (user, device, conn_id) a head
 * (the positions the client may send, the sticky room subscriptions, the room configs) and one
 * small record per room the connection sent (at which position, with which config). Kept in
 * the store, not in memory: the next request of a connection may reach another process.
 * The records' meaning is domain/sliding_sync/connection.ts's; the store only keeps them.
 */
import type { ConnectionHead, RoomEntry } from "../sliding_sync/connection.ts";

/** Which connection: the user, their device and the client's `conn_id` ("" when absent). */
export interface ConnectionKey {
  userId: string;
  deviceId: string;
  connId: string;
}

/** A head as read, with the version a later save is checked against. */
export interface LoadedHead {
  head: ConnectionHead;
  /** The head record's versionstamp: `save` fails if another request rewrote it since. */
  version: string;
}

/** Keeps connection heads and per-room records. */
export interface SlidingConnectionStore {
  /** The connection's head, or undefined when it has none (never started, or expired). */
  loadHead(key: ConnectionKey): Promise<LoadedHead | undefined>;
  /** The per-room records of these rooms (absent: never sent on any generation). */
  roomEntries(key: ConnectionKey, roomIds: readonly string[]): Promise<Map<string, RoomEntry>>;
  /**
   * Write the head, checked against `expected` (undefined: unchecked, for a new connection,
   * which replaces whatever the conn_id held), and the room records. Returns false, writing nothing, when
   * the check fails (another request of the connection saved first). Room records beyond one
   * commit's budget are written after the head, which is safe: a record stamped with a
   * position is only read as current once the client sends that position, and the client only
   * has it once this save returned.
   */
  save(
    key: ConnectionKey,
    head: ConnectionHead,
    expected: string | undefined,
    rooms: ReadonlyMap<string, RoomEntry>,
  ): Promise<boolean>;
}
