/**
 * The sender loop of an outbox: finds destinations with pending entries, takes each one's lease
 * (so two processes or isolates never send one stream at once), hands its entries in order to
 * `deliver`, acknowledges what was dealt with, and backs off a destination that fails. It is
 * woken in-process after appends, by the stream's wake key for appends other processes commit
 * (`wakes`: every append bumps it, and the WakeSource delivers it across processes), and by one
 * timer set to the next time KV says a destination comes due (a retry after backoff, or a lease
 * a dead process left running out), so it does no work on a fixed period. Without `wakes` it
 * polls KV every `pollMs` instead. Entries are delivered at least once: a crash between a
 * delivery and its acknowledgement sends that entry again.
 */
import type { OutboxEntry, OutboxLease, OutboxStore } from "../ports/outbox_store.ts";
import type { WakeSource, WakeTopic } from "../ports/wake_source.ts";

/** What `deliver` did with a destination's entries. */
export interface DeliveryOutcome {
  /** How many entries from the front were dealt with (sent, or given up as undeliverable). */
  done: number;
  /** The next entry failed in a way a later attempt may not: back the destination off. */
  failed?: boolean;
  /** The destination no longer exists (its pusher was deleted): drop its whole stream. */
  gone?: boolean;
}

/** Sends some of a destination's entries, in order. */
export type Deliver = (destination: string, entries: OutboxEntry[]) => Promise<DeliveryOutcome>;

/** How the worker runs; every field but `store` and `deliver` has a default. */
export interface OutboxWorkerOptions {
  store: OutboxStore;
  deliver: Deliver;
  now?: () => number;
  /** This process's name on leases; random by default. */
  holder?: string;
  /** Entries handed to `deliver` at once. */
  batchSize?: number;
  /** How long a lease holds; a pass stops taking batches well before it runs out. */
  leaseMs?: number;
  /**
   * Cross-process wake-ups: the source and the stream's topic (`{kind: "outbox", stream}`).
   * With them the worker never polls; without, it polls every `pollMs`.
   */
  wakes?: { source: WakeSource; topic: WakeTopic };
  /** Time between passes when nothing wakes the worker and there are no `wakes`. */
  pollMs?: number;
  /** First retry delay; it doubles per failure. */
  backoffBaseMs?: number;
  /** Longest retry delay (default: no cap). */
  maxBackoffMs?: number;
  /** Failures in a row after which the front entry is given up and the count restarts. */
  maxFailures?: number;
  /** Destinations sent to at once. */
  parallel?: number;
}

/** Destinations read per page of pending markers. */
const PENDING_PAGE = 100;

/** One outbox's sender loop. */
export class OutboxWorker {
  readonly #store: OutboxStore;
  readonly #deliver: Deliver;
  readonly #now: () => number;
  readonly #holder: string;
  readonly #batchSize: number;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  readonly #wakeSource: OutboxWorkerOptions["wakes"];
  /** Ends the wake subscription (set while running with `wakes`). */
  #unsubscribe: (() => void) | undefined;
  /** When the pass timer fires (Date.now() ms), while one is set. */
  #timerAt = 0;
  readonly #backoffBaseMs: number;
  readonly #maxBackoffMs: number;
  readonly #maxFailures: number;
  readonly #parallel: number;
  #running = false;
  /** `stop` was called: drains end after their current batch. */
  #stopping = false;
  #again = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pass: Promise<void> | undefined;
  /**
   * Destinations this process is draining, each on its own: a pass starts the ones not already
   * running and does not wait for them, so a destination that hangs until its request times out
   * delays no other destination's new entries.
   */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** Counts wake-ups, so a drain that ends can tell whether entries came while it ran. */
  #wakes = 0;
  /** Destinations this process backed off, and until when (a hint; KV holds the truth). */
  readonly #retryHints = new Map<string, number>();
  /** A background pass found every slot taken: the next drain to end starts another pass. */
  #slotWanted = false;

  /** A worker; call `start` to run it in the background, or `runOnce` to drive it by hand. */
  constructor(options: OutboxWorkerOptions) {
    this.#store = options.store;
    this.#deliver = options.deliver;
    this.#now = options.now ?? Date.now;
    this.#holder = options.holder ?? crypto.randomUUID();
    this.#batchSize = options.batchSize ?? 10;
    this.#leaseMs = options.leaseMs ?? 120_000;
    this.#pollMs = options.pollMs ?? 2_000;
    this.#wakeSource = options.wakes;
    this.#backoffBaseMs = options.backoffBaseMs ?? 1_000;
    this.#maxBackoffMs = options.maxBackoffMs ?? Infinity;
    this.#maxFailures = options.maxFailures ?? 12;
    this.#parallel = options.parallel ?? 8;
  }

  /** Run passes in the background until `stop`. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopping = false;
    const wakes = this.#wakeSource;
    if (!wakes) {
      this.#schedule(0);
      return;
    }
    // The first pass after the subscription's first look: the pass and the wakes between them
    // see every append (WakeSource.watchFromNow).
    wakes.source.watchFromNow([wakes.topic], () => this.wake()).then(
      (unsubscribe) => {
        if (!this.#running) return unsubscribe();
        this.#unsubscribe = unsubscribe;
        this.#schedule(0);
      },
      (error) => {
        console.error("outbox: no cross-process wake-ups, polling instead", error);
        if (this.#running) this.#schedule(0);
      },
    );
  }

  /**
   * Stop the loop and wait for the pass and the batches in progress to finish, their leases
   * released (call it before closing the store).
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pass;
    await Promise.all(this.#inFlight.values());
    // Driving it by hand (runOnce) after a stop sends again.
    this.#stopping = false;
  }

  /** New entries were appended in this process: run a pass soon. */
  wake(): void {
    this.#wakes++;
    if (!this.#running) return;
    if (this.#pass) this.#again = true;
    else this.#schedule(0);
  }

  /** The destination's backoff was cleared (it reached us): try it on the next pass. */
  retryNow(destination: string): void {
    this.#retryHints.delete(destination);
    this.wake();
  }

  /**
   * One pass over every destination with pending entries; resolves when the deliveries it
   * started (and any this process had running) are done.
   */
  async runOnce(): Promise<void> {
    await this.#startDrains(true);
    await Promise.all(this.#inFlight.values());
  }

  /**
   * Start draining every destination with pending entries that is not being drained here
   * already, at most `parallel` at once: `waitForSlots` waits for a free one (runOnce), the
   * background loop instead leaves the rest to the pass that a finishing drain triggers.
   */
  async #startDrains(waitForSlots: boolean): Promise<void> {
    let after: string | undefined;
    while (true) {
      const page = await this.#store.pending(PENDING_PAGE, after);
      for (const { destination, mark } of page) {
        if (this.#inFlight.has(destination)) continue;
        while (this.#inFlight.size >= this.#parallel) {
          if (!waitForSlots) {
            this.#slotWanted = true;
            return;
          }
          await Promise.race(this.#inFlight.values());
        }
        const wakes = this.#wakes;
        let unfinished = false;
        const drain = this.#drain(destination, mark)
          .then((left) => {
            unfinished = left;
          })
          .catch((error) => {
            console.error("outbox drain failed", destination, error);
            this.#retrySoon();
          })
          .finally(() => {
            this.#inFlight.delete(destination);
            // Entries appended while it ran may have missed it (a pass skips a destination in
            // flight), and a drain that ran out of time left entries that nothing else will
            // wake (no append, no due time in KV): look again.
            if (this.#wakes !== wakes || this.#slotWanted || unfinished) {
              this.#slotWanted = false;
              this.#passAgain();
            }
          });
        this.#inFlight.set(destination, drain);
      }
      if (page.length < PENDING_PAGE) return;
      after = page[page.length - 1].destination;
    }
  }

  #passAgain(): void {
    if (!this.#running) return;
    if (this.#pass) this.#again = true;
    else {
      this.#again = false;
      this.#schedule(0);
    }
  }

  #schedule(delay: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = Date.now() + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // A retry timer set while a pass ran: that pass's end starts the next one.
      if (this.#pass) {
        this.#again = true;
        return;
      }
      this.#pass = this.#startDrains(false)
        .catch((error) => {
          console.error("outbox pass failed", error);
          this.#retrySoon();
        })
        .finally(() => {
          this.#pass = undefined;
          if (!this.#running) return;
          const again = this.#again;
          this.#again = false;
          if (again) this.#schedule(0);
          else if (this.#wakeSource && this.#unsubscribe) this.#armRetryTimer();
          else this.#schedule(this.#pollMs);
        });
    }, delay);
  }

  /**
   * A pass or drain failed (KV unreachable, say): with no poll and perhaps no wake to come,
   * try again after `pollMs` rather than wait for the next append.
   */
  #retrySoon(): void {
    if (!this.#running || !this.#unsubscribe) return;
    if (this.#timer !== undefined && this.#timerAt <= Date.now() + this.#pollMs) return;
    this.#schedule(this.#pollMs);
  }

  /**
   * Set the pass timer to the next time KV says a destination comes due (its retry, or the end
   * of a lease a dead process holds), unless a pass is due sooner; no timer when none is.
   */
  #armRetryTimer(): void {
    this.#store.nextDue(this.#now()).then(
      (at) => {
        if (!this.#running || at === null) return;
        const delay = Math.max(0, at - this.#now());
        if (this.#timer !== undefined && this.#timerAt <= Date.now() + delay) return;
        this.#schedule(delay);
      },
      (error) => {
        console.error("outbox: reading the next retry failed", error);
        if (this.#running && this.#timer === undefined) this.#schedule(this.#pollMs);
      },
    );
  }

  /**
   * Send what `destination` has queued, under its lease; true when it stopped for time (half
   * the lease spent) with entries possibly left, which only another pass will send.
   */
  async #drain(destination: string, mark: string): Promise<boolean> {
    const started = this.#now();
    // A destination this process backed off is not asked about again (one KV read per pass per
    // failing destination) until its retry time; `retryNow` or another process may clear it.
    if ((this.#retryHints.get(destination) ?? 0) > started) return false;
    const lease = await this.#store.lease(
      destination,
      this.#holder,
      started,
      started + this.#leaseMs,
    );
    if (!lease) return false;
    let failures = lease.state.failures;
    let retryAt = 0;
    let emptied = false;
    try {
      // Leave a margin of half the lease: a batch must end before another process may take over.
      // A stopping worker ends each drain after its current batch, releasing the lease before
      // the process goes, so a restart need not wait for the lease to run out.
      while (!this.#stopping && this.#now() - started < this.#leaseMs / 2) {
        const entries = await this.#store.peek(destination, this.#batchSize);
        if (entries.length === 0) {
          await this.#store.clearPending(destination, mark);
          emptied = true;
          break;
        }
        const outcome = await this.#deliverSafely(destination, entries);
        if (outcome.gone) {
          await this.#store.dropDestination(destination);
          return false;
        }
        const done = entries.slice(0, outcome.done);
        if (done.length > 0) {
          await this.#store.acknowledge(destination, done.map((e) => e.ref));
          failures = 0;
        }
        if (outcome.failed) {
          failures++;
          if (failures <= this.#maxFailures) {
            retryAt = this.#now() +
              Math.min(this.#maxBackoffMs, this.#backoffBaseMs * 2 ** (failures - 1));
            break;
          }
          // Give the front entry up, as Synapse's pushers do after their longest backoff, and
          // go on with the rest.
          const front = entries[outcome.done];
          if (front) await this.#store.acknowledge(destination, [front.ref]);
          failures = 0;
        }
      }
    } finally {
      await this.#release(lease, failures, retryAt);
      if (retryAt > 0) this.#retryHints.set(destination, retryAt);
      else this.#retryHints.delete(destination);
      // The pass that started this drain may have ended already: time the retry from here.
      if (retryAt > 0 && this.#running && this.#unsubscribe) this.#armRetryTimer();
    }
    // Backed off (its retry time is in KV) or emptied: nothing more for now.
    return retryAt === 0 && !emptied && !this.#stopping;
  }

  async #deliverSafely(destination: string, entries: OutboxEntry[]): Promise<DeliveryOutcome> {
    try {
      return await this.#deliver(destination, entries);
    } catch (error) {
      console.warn("outbox delivery failed", destination, error);
      return { done: 0, failed: true };
    }
  }

  async #release(lease: OutboxLease, failures: number, retryAt: number): Promise<void> {
    try {
      await this.#store.release(lease, { failures, retryAt });
    } catch (error) {
      console.error("outbox lease release failed", lease.destination, error);
    }
  }
}
