/**
 * Lazy-loaded member events sent to a device (`userdeviceroom_sentmembers`), one value per
 * (user, device, room): member -> [event ID, token]. The sync service bounds the entries, so a
 * value stays far below KV's 64 KiB; values expire after a month without a sync touching the
 * room, so a device that stops syncing (or is deleted) leaves nothing behind for long.
 */
import type { SentMember, SentMembersStore } from "../domain/ports/sent_members_store.ts";
import { sentMembersKey } from "./schema.ts";

/** How long a record outlives the last sync that wrote it. */
const SENT_MEMBERS_TTL_MS = 30 * 24 * 3600 * 1000;

type Stored = Record<string, [string, string]>;

/** The KV implementation of the SentMembersStore port. */
export class KvSentMembersStore implements SentMembersStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See SentMembersStore.get. */
  async get(userId: string, deviceId: string, roomId: string): Promise<Map<string, SentMember>> {
    const stored = (await this.kv.get<Stored>(sentMembersKey(userId, deviceId, roomId))).value;
    const out = new Map<string, SentMember>();
    for (const [member, [eventId, token]] of Object.entries(stored ?? {})) {
      out.set(member, { eventId, token });
    }
    return out;
  }

  /** See SentMembersStore.put. */
  async put(
    userId: string,
    deviceId: string,
    roomId: string,
    sent: ReadonlyMap<string, SentMember>,
  ): Promise<void> {
    const value: Stored = {};
    for (const [member, { eventId, token }] of sent) value[member] = [eventId, token];
    await this.kv.set(sentMembersKey(userId, deviceId, roomId), value, {
      expireIn: SENT_MEMBERS_TTL_MS,
    });
  }
}
