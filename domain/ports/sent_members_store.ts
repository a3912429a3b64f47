/**
 * The storage port for the lazy-loaded member events a device was sent in each room, so an
 * incremental /sync does not send them again (`include_redundant_members: false`, the
 * default). Kept in the store, not in memory: the next sync of the device may be served by
 * another process.
 */

/** A member event sent to a device: its ID and the `next_batch` of the response that held it. */
export interface SentMember {
  eventId: string;
  token: string;
}

/** Member events sent per (user, device, room), by the member's user ID. */
export interface SentMembersStore {
  /** What was recorded for the device in the room; empty when nothing. */
  get(userId: string, deviceId: string, roomId: string): Promise<Map<string, SentMember>>;
  /**
   * Replace the record for the device in the room. Last write wins: two syncs of one device
   * racing may lose an entry, which only makes a later sync send that member again.
   */
  put(
    userId: string,
    deviceId: string,
    roomId: string,
    sent: ReadonlyMap<string, SentMember>,
  ): Promise<void>;
}
