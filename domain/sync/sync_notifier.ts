/**
 * Wakes long-polling `/sync` requests in this process. A request registers a watch on its user
 * and rooms BEFORE it reads, so a change landing between the read and the wait is not lost:
 * the watch is already marked changed and the wait returns at once.
 *
 * Rooms: the event store's in-process `onRoomAppended` wakes watches of that room. A user who
 * is not yet in the room (an invite, their own join from another device) is found by reading
 * the commit's membership events once per append, not once per waiter.
 * Everything else (account data, to-device, typing, receipts, presence) calls `notifyUser` or
 * `notifyRoom` after its own commit.
 *
 * Other isolates (Deno Deploy) are not woken by this; see the README's long-poll notes: a
 * per-user wake key bumped by writers and a `kv.watch` per waiting user (10 keys at most per
 * watch) would extend it. Until then a waiter in another isolate answers at its timeout.
 */
import type { EventStore } from "../ports/event_store.ts";

/** One registered waiter. */
export interface SyncWatch {
  /** True once something the watch covers changed. */
  readonly changed: boolean;
  /** Resolve true on a change (at once if one happened already), false after `timeoutMs`. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Stop watching; always call it (finally). */
  close(): void;
}

/** Membership events read per append when looking for users who just joined a room. */
const MEMBERSHIP_SCAN_PAGE = 50;

/** In-process wake-ups for long-polling syncs. */
export class SyncNotifier {
  readonly #byUser = new Map<string, Set<Watch>>();
  readonly #byRoom = new Map<string, Set<Watch>>();
  #detach: (() => void) | undefined;

  /**
   * Listen to a store's appends: wake watches of the room, and users whose membership the
   * commit changed. Returns a function that stops listening.
   */
  attach(store: Pick<EventStore, "onRoomAppended" | "timeline">): () => void {
    this.#detach?.();
    const off = store.onRoomAppended((roomId, versionstamp) => {
      this.notifyRoom(roomId);
      if (this.#byUser.size > 0) {
        this.#wakeNewMembers(store, roomId, versionstamp).catch((error) =>
          console.error("sync notifier: membership scan failed", roomId, error)
        );
      }
    });
    this.#detach = off;
    return off;
  }

  /** Wake every sync of `userId` (account data, to-device, presence, a membership change). */
  notifyUser(userId: string): void {
    for (const watch of this.#byUser.get(userId) ?? []) watch.fire();
  }

  /** Wake every sync watching `roomId` (a new event, typing, a receipt). */
  notifyRoom(roomId: string): void {
    for (const watch of this.#byRoom.get(roomId) ?? []) watch.fire();
  }

  /** Register a waiter for a user and the rooms they can see; call before reading. */
  watch(userId: string, roomIds: Iterable<string>): SyncWatch {
    const rooms = [...new Set(roomIds)];
    const watch = new Watch(() => {
      remove(this.#byUser, userId, watch);
      for (const roomId of rooms) remove(this.#byRoom, roomId, watch);
    });
    add(this.#byUser, userId, watch);
    for (const roomId of rooms) add(this.#byRoom, roomId, watch);
    return watch;
  }

  /** Number of open watches (for tests and metrics). */
  get watching(): number {
    let n = 0;
    for (const set of this.#byUser.values()) n += set.size;
    return n;
  }

  /** Wake waiting users whose m.room.member event landed in this commit. */
  async #wakeNewMembers(
    store: Pick<EventStore, "timeline">,
    roomId: string,
    versionstamp: string,
  ): Promise<void> {
    let from: string | undefined;
    for (;;) {
      const page = await store.timeline(roomId, { dir: "b", from, limit: MEMBERSHIP_SCAN_PAGE });
      for (const event of page.events) {
        if (event.versionstamp !== versionstamp) return;
        if (event.pdu.type === "m.room.member" && typeof event.pdu.state_key === "string") {
          this.notifyUser(event.pdu.state_key);
        }
      }
      if (page.end === undefined) return;
      from = page.end;
    }
  }
}

class Watch implements SyncWatch {
  #changed = false;
  #wake: ((changed: boolean) => void) | undefined;
  #closed = false;

  constructor(private readonly unregister: () => void) {}

  get changed(): boolean {
    return this.#changed;
  }

  fire(): void {
    this.#changed = true;
    this.#wake?.(true);
  }

  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#changed) return Promise.resolve(true);
    if (timeoutMs <= 0 || this.#closed || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#wake = undefined;
        resolve(value);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      signal?.addEventListener("abort", onAbort);
      this.#wake = done;
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.(false);
    this.unregister();
  }
}

function add(map: Map<string, Set<Watch>>, key: string, watch: Watch): void {
  let set = map.get(key);
  if (!set) map.set(key, set = new Set());
  set.add(watch);
}

function remove(map: Map<string, Set<Watch>>, key: string, watch: Watch): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(watch);
  if (set.size === 0) map.delete(key);
}
