/**
 * A per-call memo in front of the injected event storage. State resolution reads the same auth
 * events many times (auth chains, power levels, mainlines), so each ID is fetched at most once.
 */
import type { RoomEvent } from "../events.ts";

/** Memoised event look-ups for one state resolution call. */
export class EventCache {
  readonly #fetch: (id: string) => Promise<RoomEvent | undefined>;
  readonly #pending = new Map<string, Promise<RoomEvent | undefined>>();
  readonly #loaded = new Map<string, RoomEvent | undefined>();

  /** Wrap an injected fetcher; storage errors propagate, only `undefined` means missing. */
  constructor(fetch: (id: string) => Promise<RoomEvent | undefined>) {
    this.#fetch = fetch;
  }

  /** Fetch one event (once per ID); undefined when storage does not have it. */
  get(id: string): Promise<RoomEvent | undefined> {
    let pending = this.#pending.get(id);
    if (!pending) {
      pending = this.#fetch(id).then((event) => {
        // An event stored under another ID is not the event we asked for.
        const found = event && event.event_id === id ? event : undefined;
        this.#loaded.set(id, found);
        return found;
      });
      this.#pending.set(id, pending);
    }
    return pending;
  }

  /** Fetch several events concurrently, in the order given. */
  getMany(ids: Iterable<string>): Promise<(RoomEvent | undefined)[]> {
    return Promise.all([...ids].map((id) => this.get(id)));
  }

  /** A previously fetched event, synchronously; undefined if missing or not fetched yet. */
  peek(id: string): RoomEvent | undefined {
    return this.#loaded.get(id);
  }
}
