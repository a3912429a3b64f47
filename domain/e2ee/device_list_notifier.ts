/**
 * Wakes the long-polling syncs that care about a device-list change: the user's own and those of
 * everyone sharing a room with them (each of the user's rooms is woken once, which reaches every
 * member watching it). Call after the commit holding the change completed, with its raw KV versionstamp
 * (what `commit()` returns, not a sync token).
 */
import type { EventStore } from "../ports/event_store.ts";
import type { SyncNotifier } from "../sync/sync_notifier.ts";

/** Memberships whose members hear about a user's device-list changes. */
const SHARING = ["join", "invite", "knock"];

/** After-commit wake-ups for device-list changes. */
export class DeviceListNotifier {
  /** Over the store's memberships and the in-process sync notifier. */
  constructor(
    private readonly store: Pick<EventStore, "roomsOfUser">,
    private readonly notifier: Pick<SyncNotifier, "notifyUser" | "notifyRoom">,
  ) {}

  /**
   * Run after the wake-ups of every change, in the caller's request (the federation sender
   * queues the users' device-list EDUs here). They must not reject: the change is committed.
   */
  readonly changeHooks: ((userIds: readonly string[]) => Promise<void>)[] = [];

  /** Tell the syncs of `userIds` and of their room-mates that commit `versionstamp` changed them. */
  async changed(userIds: readonly string[], versionstamp: string): Promise<void> {
    const rooms = new Set<string>();
    for (const userId of userIds) {
      this.notifier.notifyUser(userId, versionstamp);
      for (const m of await this.store.roomsOfUser(userId, SHARING)) rooms.add(m.roomId);
    }
    for (const roomId of rooms) this.notifier.notifyRoom(roomId, versionstamp);
    for (const hook of this.changeHooks) await hook(userIds);
  }
}
