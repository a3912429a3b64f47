/**
 * The adapters of the WakeSource port (domain/ports/wake_source.ts), chosen by `TESSERA_WAKE`:
 *
 * - `watch`: one `kv.watch` per 10 keys of a subscription (watch takes 10 keys at most), closed
 *   when it unsubscribes. On Deno Deploy and KV Connect a watch sees other isolates' commits.
 * - `poll`: one timer per process, running only while something is subscribed; each tick reads
 *   the union of every subscription's keys with `getMany` in groups of 10. For processes sharing
 *   a local KV file, where `kv.watch` never sees another process's commit.
 * - `local`: nothing crosses processes; the in-process notifiers are the whole story.
 *
 * Both live adapters compare versionstamps (20 hex digits, ordered as text) with the newest one a
 * subscription has been given (`after` to begin with), so a bump is reported once, and only
 * when it is newer than what the subscriber has read.
 */
import type { OnWake, WakeMode, WakeSource, WakeTopic } from "../domain/ports/wake_source.ts";
import { wakeKey } from "./wake_keys.ts";

/** Keys per `getMany` and per `kv.watch` (Deno KV's limit for both). */
export const WAKE_KEYS_PER_READ = 10;

/** First wait before a failed or ended `kv.watch` is opened again; it doubles per failure. */
const WATCH_RETRY_BASE_MS = 100;
/** Longest wait between attempts to open a watch again. */
const WATCH_RETRY_MAX_MS = 5_000;

/** Build the wake source of `mode` over `kv`; `pollMs` is the poll adapter's interval. */
export function openWakeSource(kv: Deno.Kv, mode: WakeMode, pollMs: number): WakeSource {
  switch (mode) {
    case "watch":
      return new WatchWakeSource(kv);
    case "poll":
      return new PollWakeSource(kv, pollMs);
    case "local":
      return new LocalWakeSource();
  }
}

/** `TESSERA_WAKE=local`: one process, nothing to watch (the in-process notifiers suffice). */
export class LocalWakeSource implements WakeSource {
  readonly mode = "local";

  /** Never calls `onWake`. */
  watchAfter(_topics: readonly WakeTopic[], _after: string, _onWake: OnWake): () => void {
    return () => {};
  }

  /** Never calls `onWake`. */
  watchFromNow(_topics: readonly WakeTopic[], _onWake: OnWake): Promise<() => void> {
    return Promise.resolve(() => {});
  }

  /** Nothing to stop. */
  close(): void {}
}

/** `TESSERA_WAKE=watch`: `kv.watch`, one stream per 10 keys of each subscription. */
export class WatchWakeSource implements WakeSource {
  readonly mode = "watch";
  readonly #subscriptions = new Set<WatchSubscription>();
  #closed = false;

  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** Number of open subscriptions (for tests and metrics). */
  get subscriptionCount(): number {
    return this.#subscriptions.size;
  }

  /** See WakeSource; a watch's first answer (the keys as they are) reports a bump already past. */
  watchAfter(topics: readonly WakeTopic[], after: string, onWake: OnWake): () => void {
    const subscription = new WatchSubscription(after, onWake);
    if (this.#closed) return () => {};
    this.#subscriptions.add(subscription);
    for (const group of groups(uniqueKeys(topics))) this.#pump(subscription, group);
    return () => {
      this.#subscriptions.delete(subscription);
      subscription.stop();
    };
  }

  /** See WakeSource: one read of the keys, then a watch after the newest of them. */
  async watchFromNow(topics: readonly WakeTopic[], onWake: OnWake): Promise<() => void> {
    return this.watchAfter(topics, await newestVersionstamp(this.kv, topics), onWake);
  }

  /** Stop every subscription. */
  close(): void {
    this.#closed = true;
    for (const subscription of this.#subscriptions) subscription.stop();
    this.#subscriptions.clear();
  }

  /**
   * Report what `keys` (one group) do while the subscription lasts. A watch that fails or ends
   * while still wanted (a dropped connection to KV) is opened again after a short backoff: left
   * alone, a long-poll would sleep to its timeout and an outbox sender would never again hear
   * another process's appends. The new watch's first answer (the keys as they are) reports a
   * bump made in between, since only versionstamps newer than the last reported one count.
   */
  async #pump(subscription: WatchSubscription, keys: Deno.KvKey[]): Promise<void> {
    for (let failures = 0;;) {
      if (subscription.closed || this.#closed) return;
      let reader: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]> | undefined;
      try {
        reader = this.kv.watch(keys).getReader();
        subscription.readers.add(reader);
        for (;;) {
          const { done, value } = await reader.read();
          if (done || subscription.closed) break;
          failures = 0;
          subscription.offer(newest(value.map((entry) => entry.versionstamp)));
        }
      } catch (error) {
        // The database closed (its watches end, a new one throws): nothing left to watch.
        if (error instanceof Deno.errors.BadResource) return;
        // A stream cancelled by unsubscribe or close ends here too; only a live one is news.
        if (!subscription.closed && !this.#closed) console.error("wake: kv.watch failed", error);
      } finally {
        if (reader) subscription.readers.delete(reader);
      }
      if (subscription.closed || this.#closed) return;
      // The first time at once (a closed database then throws at once, and the loop ends); after
      // that with a growing wait.
      if (failures++ > 0) {
        await subscription.sleep(
          Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_BASE_MS * 2 ** Math.min(failures - 2, 10)),
        );
      }
    }
  }
}

/** `TESSERA_WAKE=poll`: one timer per process reading every subscribed key each `intervalMs`. */
export class PollWakeSource implements WakeSource {
  readonly mode = "poll";
  /** Subscribed keys, each with its subscribers: the union a tick reads. */
  readonly #byKey = new Map<string, { key: Deno.KvKey; subscribers: Set<Subscription> }>();
  readonly #subscriptions = new Set<Subscription>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ticking = false;
  #closed = false;

  /** Over an open KV database, reading the subscribed keys every `intervalMs`. */
  constructor(private readonly kv: Deno.Kv, readonly intervalMs: number) {}

  /** Whether the poll timer will fire again (it runs only while something is subscribed). */
  get polling(): boolean {
    // A tick in flight when the last subscriber left sets no next one.
    return this.#timer !== undefined || (this.#ticking && this.#subscriptions.size > 0);
  }

  /** Number of open subscriptions (for tests and metrics). */
  get subscriptionCount(): number {
    return this.#subscriptions.size;
  }

  /** Number of distinct keys each tick reads (for tests and measurements). */
  get keyCount(): number {
    return this.#byKey.size;
  }

  /** See WakeSource; a first read of this subscription's keys reports a bump already past. */
  watchAfter(topics: readonly WakeTopic[], after: string, onWake: OnWake): () => void {
    const subscription = this.#subscribe(topics, after, onWake);
    if (subscription === undefined) return () => {};
    // "At once" rather than at the next tick: only this subscription's keys are read.
    const own = subscription.keys.map((id) => this.#byKey.get(id)!.key);
    readMany(this.kv, own).then(
      (versionstamps) => subscription.offer(newest(versionstamps)),
      (error) => {
        if (!subscription.closed && !this.#closed) console.error("wake: poll read failed", error);
      },
    );
    return () => this.#unsubscribe(subscription);
  }

  /** See WakeSource: one read of the keys, then polled after the newest of them. */
  async watchFromNow(topics: readonly WakeTopic[], onWake: OnWake): Promise<() => void> {
    const after = await newestVersionstamp(this.kv, topics);
    const subscription = this.#subscribe(topics, after, onWake);
    return subscription === undefined ? () => {} : () => this.#unsubscribe(subscription);
  }

  /** Stop every subscription and the timer. */
  close(): void {
    this.#closed = true;
    for (const subscription of this.#subscriptions) subscription.closed = true;
    this.#subscriptions.clear();
    this.#byKey.clear();
    this.#stopTimer();
  }

  /** Read every subscribed key once and report what moved (one tick; tests call it directly). */
  async tick(): Promise<void> {
    const ids = [...this.#byKey.keys()];
    const keys = ids.map((id) => this.#byKey.get(id)!.key);
    const versionstamps = await readMany(this.kv, keys);
    // The newest bump per subscriber, so one tick calls each subscriber at most once.
    const news = new Map<Subscription, string>();
    versionstamps.forEach((versionstamp, i) => {
      if (versionstamp === null) return;
      for (const subscriber of this.#byKey.get(ids[i])?.subscribers ?? []) {
        const known = news.get(subscriber);
        if (known === undefined || versionstamp > known) news.set(subscriber, versionstamp);
      }
    });
    for (const [subscriber, versionstamp] of news) subscriber.offer(versionstamp);
  }

  #subscribe(topics: readonly WakeTopic[], after: string, onWake: OnWake) {
    if (this.#closed) return undefined;
    const subscription = new Subscription(after, onWake);
    for (const topic of uniqueTopics(topics)) {
      const id = topicId(topic);
      let entry = this.#byKey.get(id);
      if (!entry) this.#byKey.set(id, entry = { key: wakeKey(topic), subscribers: new Set() });
      entry.subscribers.add(subscription);
      subscription.keys.push(id);
    }
    this.#subscriptions.add(subscription);
    this.#schedule();
    return subscription;
  }

  #unsubscribe(subscription: Subscription): void {
    subscription.closed = true;
    if (!this.#subscriptions.delete(subscription)) return;
    for (const id of subscription.keys) {
      const entry = this.#byKey.get(id);
      entry?.subscribers.delete(subscription);
      if (entry?.subscribers.size === 0) this.#byKey.delete(id);
    }
    if (this.#subscriptions.size === 0) this.#stopTimer();
  }

  /** Set the timer when there is something to poll and no tick is set or running. */
  #schedule(): void {
    if (this.#closed || this.#timer !== undefined || this.#ticking) return;
    if (this.#subscriptions.size === 0) return;
    const timer = setTimeout(() => this.#runTick(), this.intervalMs);
    // A process that is otherwise done (a script, a test) need not wait for the poll.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #runTick(): Promise<void> {
    this.#timer = undefined;
    this.#ticking = true;
    try {
      await this.tick();
    } catch (error) {
      if (!this.#closed) console.error("wake: poll failed", error);
    } finally {
      this.#ticking = false;
      // The next tick is set after this one ends, so a slow read never overlaps the next.
      this.#schedule();
    }
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** One subscriber: reports each versionstamp newer than the newest it was given. */
class Subscription {
  closed = false;
  /** The poll adapter's key ids of this subscription. */
  readonly keys: string[] = [];

  constructor(private seen: string, private readonly onWake: OnWake) {}

  /** Report `versionstamp` when it is newer than anything reported (or `after`). */
  offer(versionstamp: string | null): void {
    if (this.closed || versionstamp === null || versionstamp <= this.seen) return;
    this.seen = versionstamp;
    try {
      this.onWake(versionstamp);
    } catch (error) {
      console.error("wake: subscriber failed", error);
    }
  }
}

class WatchSubscription extends Subscription {
  readonly readers = new Set<ReadableStreamDefaultReader<unknown>>();
  /** Backoffs before a watch is opened again, each ended early by `stop`. */
  readonly #sleeps = new Set<() => void>();

  /** Resolves after `ms`, or at once when the subscription stops. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const end = () => {
        clearTimeout(timer);
        this.#sleeps.delete(end);
        resolve();
      };
      const timer = setTimeout(end, ms);
      this.#sleeps.add(end);
    });
  }

  stop(): void {
    this.closed = true;
    for (const reader of this.readers) reader.cancel().catch(() => {});
    for (const end of [...this.#sleeps]) end();
  }
}

function topicId(topic: WakeTopic): string {
  switch (topic.kind) {
    case "user":
      return `user\u0000${topic.userId}`;
    case "room":
      return `room\u0000${topic.roomId}`;
    case "outbox":
      return `outbox\u0000${topic.stream}`;
  }
}

function uniqueTopics(topics: readonly WakeTopic[]): WakeTopic[] {
  const byId = new Map<string, WakeTopic>();
  for (const topic of topics) byId.set(topicId(topic), topic);
  return [...byId.values()];
}

function uniqueKeys(topics: readonly WakeTopic[]): Deno.KvKey[] {
  return uniqueTopics(topics).map(wakeKey);
}

function groups<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += WAKE_KEYS_PER_READ) {
    out.push(items.slice(i, i + WAKE_KEYS_PER_READ));
  }
  return out;
}

/** The versionstamps of `keys` (null where absent), read in groups of 10 side by side. */
async function readMany(kv: Deno.Kv, keys: readonly Deno.KvKey[]): Promise<(string | null)[]> {
  const pages = await Promise.all(groups(keys).map((group) => kv.getMany(group)));
  return pages.flat().map((entry) => entry.versionstamp);
}

function newest(versionstamps: readonly (string | null)[]): string | null {
  let found: string | null = null;
  for (const v of versionstamps) if (v !== null && (found === null || v > found)) found = v;
  return found;
}

/** The newest versionstamp among the topics' keys; "" (before every versionstamp) when none is set. */
async function newestVersionstamp(kv: Deno.Kv, topics: readonly WakeTopic[]): Promise<string> {
  return newest(await readMany(kv, uniqueKeys(topics))) ?? "";
}
