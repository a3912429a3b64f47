/** The state usage projection, as the state caps (domain/rooms/state_quota.ts) read it. */

/** A room's state usage, with the entry a new event at (type, state key) would replace. */
export interface StateUsage {
  /** Bytes of the room's non-member current state. */
  roomBytes: number;
  /** Bytes of those entries the user sent. */
  userBytes: number;
  /** The current entry at (type, state key), when it counts. */
  entry: { sender: string; bytes: number } | null;
}

/** Reads the state usage projection. */
export interface StateUsageReader {
  /** Usage of `roomId`, of `userId` in it, and the entry at (type, stateKey). */
  stateUsage(roomId: string, userId: string, type: string, stateKey: string): Promise<StateUsage>;
}
