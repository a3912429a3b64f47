/**
 * Caps on a room's current state, checked before a local user's state event is sent. Every
 * joiner's first sync carries the whole current state, so state is the cheapest way to make a
 * room expensive for everyone: one user stored 2,000 state events of 30 KB in 15 s and each new
 * joiner's first sync became 60 MB. Synapse and conduwuit bound only each event (64 KiB); here a
 * user may hold at most MAX_USER_STATE_BYTES of a room's state and the room at most
 * MAX_ROOM_STATE_BYTES, member events excepted: those are one per user, bounded by the event
 * limit and by join rate limits, and a busy room's member list must never stop joins.
 *
 * The byte counts are a projection kept in the append commit (kv/projections.ts) and rebuilt by
 * replay, so checking costs three small reads, whatever the size of the room.
 */
import { tooLarge } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { StateUsageReader } from "../ports/state_usage_reader.ts";

/**
 * Bytes one user's entries may take in one room's non-member state: about 2,500 space children
 * or 30 entries of 30 KB. A space admin linking thousands of rooms is the largest real case.
 */
export const MAX_USER_STATE_BYTES = 1024 * 1024;

/**
 * Bytes a room's non-member state may take in all: name, topic, power levels, widgets and
 * space children of real rooms take kilobytes to a few hundred kilobytes.
 */
export const MAX_ROOM_STATE_BYTES = 4 * 1024 * 1024;

/**
 * What an entry costs beyond its content, type and state key: the envelope a client receives
 * (event ID, sender, timestamps, room ID, unsigned), so that empty events are not free.
 */
export const STATE_ENTRY_OVERHEAD_BYTES = 256;

const utf8 = new TextEncoder();

/** The bytes a state entry counts for: its content's JSON, type, state key and the envelope. */
export function stateEntryBytes(type: string, stateKey: string, content: unknown): number {
  return utf8.encode(JSON.stringify(content ?? {})).byteLength +
    utf8.encode(type).byteLength + utf8.encode(stateKey).byteLength +
    STATE_ENTRY_OVERHEAD_BYTES;
}

/** Whether entries of `type` count toward the caps (member events do not; see above). */
export function countsTowardStateQuota(type: string): boolean {
  return type !== "m.room.member";
}

/** A state event a local user asks to send. */
export interface StateWrite {
  userId: string;
  roomId: string;
  type: string;
  stateKey: string;
  content: JsonObject;
}

/** Checks local state writes against the caps. */
export class StateQuota {
  /** Over the projection's reader. */
  constructor(private readonly usage: StateUsageReader) {}

  /**
   * Refuse (413 M_TOO_LARGE) a write that would take the sender or the room over its cap. A
   * write that does not grow the totals (replacing an entry with a smaller one) always passes,
   * so a room at its cap can still be tidied. The check runs before the send, not inside its
   * commit: two concurrent sends may overshoot by one event each (at most 64 KiB), which the
   * state rate limit keeps rare.
   */
  async check(write: StateWrite): Promise<void> {
    if (!countsTowardStateQuota(write.type)) return;
    const { roomId, userId, type, stateKey } = write;
    const usage = await this.usage.stateUsage(roomId, userId, type, stateKey);
    const bytes = stateEntryBytes(type, stateKey, write.content);
    const replaced = usage.entry?.bytes ?? 0;
    const roomAfter = usage.roomBytes - replaced + bytes;
    const userAfter = usage.userBytes - (usage.entry?.sender === userId ? replaced : 0) + bytes;
    if (bytes > replaced && roomAfter > MAX_ROOM_STATE_BYTES) {
      throw tooLarge(
        `The room's state would exceed ${MAX_ROOM_STATE_BYTES} bytes; ` +
          "remove or shrink other state events first",
      );
    }
    if (userAfter > usage.userBytes && userAfter > MAX_USER_STATE_BYTES) {
      throw tooLarge(
        `Your state events in this room would exceed ${MAX_USER_STATE_BYTES} bytes; ` +
          "remove or shrink some of them first",
      );
    }
  }
}
