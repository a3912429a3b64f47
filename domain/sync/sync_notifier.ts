/**
 * Wakes long-polling `/sync` requests in this process. A request registers a watch on its user
 * and rooms BEFORE it reads, so a change landing between the read and the wait is not lost:
 * the watch is already marked changed and the wait returns at once.
 *
 * Rooms: the event store's in-process `onRoomAppended` wakes watches of that room. A user who
 * is not yet in the room (an invite, their own join from another device) is found by reading
 * the commit's membership events once per append, not once per waiter.
 * Everything else (account data, to-device, typing, receipts, presence) calls `notifyUser` or
 * `notifyRoom` after its own commit, with that commit's versionstamp when it has one.
 *
 * A watch remembers the newest versionstamp it was woken with, so the woken sync can read up to
 * it instead of writing a barrier of its own (see `SyncWatch.wokenAt`).
 *
 * Other processes (isolates on Deno Deploy, servers sharing a KV file): their writers bump the
 * wake keys of what they change in the same commit (kv/wake_keys.ts), and a watch about to wait
 * subscribes to its user's and rooms' keys through the WakeSource (`wakeAfter`), after the
 * position its read covered: a bump newer than that wakes it with the bump's versionstamp, so
 * `wokenAt` holds across processes too. The in-process path stays: it is the fast one.
 */
import type { EventStore } from "../ports/event_store.ts";
import type { WakeSource, WakeTopic } from "../ports/wake_source.ts";
import { syncTokenAt, syncTokenVersionstamp } from "./sync_token.ts";

/** One registered waiter. */
export interface SyncWatch {
  /** True once something the watch covers changed. */
  readonly changed: boolean;
  /**
   * The sync token of the newest commit that woke this watch, when every wake named its commit;
   * undefined when none did or one came without a versionstamp (then only a barrier will do).
   * That commit has completed, so reads starting now see every commit up to it.
   */
  readonly wokenAt: string | undefined;
  /**
   * Also wake on commits of other processes newer than `token`, the sync token up to which the
   * caller has read (call it before `wait`; once per watch, later calls are ignored). Level
   * triggered: a commit that landed after `token` but before this call wakes it at once.
   */
  wakeAfter(token: string): void;
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

  /** `wakes`: other processes' commits (absent or `local`: this process's notifications only). */
  constructor(private readonly wakes?: WakeSource) {}

  /**
   * Listen to a store's appends: wake watches of the room, and users whose membership the
   * commit changed. Returns a function that stops listening.
   */
  attach(store: Pick<EventStore, "onRoomAppended" | "timeline">): () => void {
    this.#detach?.();
    const off = store.onRoomAppended((roomId, versionstamp) => {
      this.notifyRoom(roomId, versionstamp);
      if (this.#byUser.size > 0) {
        this.#wakeNewMembers(store, roomId, versionstamp).catch((error) =>
          console.error("sync notifier: membership scan failed", roomId, error)
        );
      }
    });
    this.#detach = off;
    return off;
  }

  /**
   * Wake every sync of `userId` (account data, to-device, presence, a membership change).
   * Pass the change's commit versionstamp, once that commit has completed, when there is one.
   */
  notifyUser(userId: string, versionstamp?: string): void {
    for (const watch of this.#byUser.get(userId) ?? []) watch.fire(versionstamp);
  }

  /**
   * Wake every sync watching `roomId` (a new event, typing, a receipt). Pass the change's commit
   * versionstamp, once that commit has completed, when there is one.
   */
  notifyRoom(roomId: string, versionstamp?: string): void {
    for (const watch of this.#byRoom.get(roomId) ?? []) watch.fire(versionstamp);
  }

  /** Register a waiter for a user and the rooms they can see; call before reading. */
  watch(userId: string, roomIds: Iterable<string>): SyncWatch {
    const rooms = [...new Set(roomIds)];
    const wakes = this.wakes?.mode === "local" ? undefined : this.wakes;
    const topics = (): WakeTopic[] => [
      { kind: "user", userId },
      ...rooms.map((roomId): WakeTopic => ({ kind: "room", roomId })),
    ];
    const watch = new Watch(
      () => {
        remove(this.#byUser, userId, watch);
        for (const roomId of rooms) remove(this.#byRoom, roomId, watch);
      },
      wakes &&
        ((token, fire) => wakes.watchAfter(topics(), syncTokenVersionstamp(token), fire)),
    );
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
          this.notifyUser(event.pdu.state_key, versionstamp);
        }
      }
      if (page.end === undefined) return;
      from = page.end;
    }
  }
}

class Watch implements SyncWatch {
  #changed = false;
  /** Newest versionstamp woken with; null once a wake came without one. */
  #newest: string | null | undefined;
  #wake: ((changed: boolean) => void) | undefined;
  #closed = false;
  /** Stops the cross-process subscription; set once `wakeAfter` subscribed. */
  #unsubscribe: (() => void) | undefined;

  constructor(
    private readonly unregister: () => void,
    /** Subscribe to other processes' commits after a token (absent: in-process only). */
    private readonly subscribe?: (
      token: string,
      fire: (versionstamp: string) => void,
    ) => () => void,
  ) {}

  get changed(): boolean {
    return this.#changed;
  }

  get wokenAt(): string | undefined {
    return typeof this.#newest === "string" ? syncTokenAt(this.#newest) : undefined;
  }

  fire(versionstamp?: string): void {
    this.#changed = true;
    if (versionstamp === undefined) this.#newest = null;
    else if (this.#newest !== null && (this.#newest === undefined || versionstamp > this.#newest)) {
      this.#newest = versionstamp;
    }
    this.#wake?.(true);
  }

  wakeAfter(token: string): void {
    if (this.#closed || this.#unsubscribe !== undefined || !this.subscribe) return;
    this.#unsubscribe = this.subscribe(token, (versionstamp) => this.fire(versionstamp));
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
    this.#unsubscribe?.();
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
