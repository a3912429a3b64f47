/**
 * Ends the remote device-list cache's trust when we stop sharing a room with a user
 * (remote_device_cache.ts explains why): after every committed membership change away from
 * `join`, the users it may have cut off are checked and the caches of those sharing no room
 * with us any more are dropped, so a later rejoin resyncs.
 *
 * - another server's user leaving (or kicked, banned): that user;
 * - our last local member leaving a room: every remote member of it with a cache.
 * A local member leaving a room other local members stay in changes nothing (one read).
 */
import type { EventReader } from "../ports/event_store.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import { MembershipEndedHook } from "../rooms/membership_ended_hook.ts";
import { serverNameOf } from "../protocol/auth_context.ts";
import type { RemoteDeviceCache } from "./remote_device_cache.ts";

/** Remote members checked per batch when our server leaves a big room. */
const MEMBERS_PER_BATCH = 100;

/** What the hook reads. */
export interface RemoteDeviceSharingDeps {
  events: Pick<EventReader, "isServerInRoom" | "members">;
  cache: Pick<RemoteDeviceCache, "dropUnshared">;
  serverName: string;
  log?: (message: string, ...details: unknown[]) => void;
}

/** The event hook (see the module comment). */
export class RemoteDeviceSharingHook implements LocalEventHook {
  readonly #hook: MembershipEndedHook;

  /** Over the membership reads and the cache. */
  constructor(private readonly deps: RemoteDeviceSharingDeps) {
    // The next update with an unseen prev_id still resyncs; a leave must not fail on it.
    this.#hook = new MembershipEndedHook(
      (roomId, userId) => this.membershipEnded(roomId, userId),
      "device lists: cache not dropped",
      deps.log,
    );
  }

  prepare(
    event: Parameters<LocalEventHook["prepare"]>[0],
  ): Promise<PreparedEventWrites | undefined> {
    return this.#hook.prepare(event);
  }

  /** After `userId` stopped being joined to `roomId`: drop caches nobody shares any more. */
  async membershipEnded(roomId: string, userId: string): Promise<string[]> {
    if (serverNameOf(userId) !== this.deps.serverName) {
      return await this.deps.cache.dropUnshared([userId]);
    }
    if (await this.deps.events.isServerInRoom(roomId, this.deps.serverName)) return [];
    const remote = (await this.deps.events.members(roomId, ["join"]))
      .map((m) => m.userId)
      .filter((id) => serverNameOf(id) !== this.deps.serverName);
    const dropped: string[] = [];
    for (let i = 0; i < remote.length; i += MEMBERS_PER_BATCH) {
      dropped.push(...await this.deps.cache.dropUnshared(remote.slice(i, i + MEMBERS_PER_BATCH)));
    }
    return dropped;
  }
}
