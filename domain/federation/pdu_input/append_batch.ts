/**
 * Appends of one room's PDUs held back until a batch is complete, then queued in order all at
 * once, so the store's per-room queue folds them into one commit instead of one commit (one
 * disk sync) per PDU. A KV read waits behind a commit in flight, so appending each PDU as soon
 * as it is checked would leave nothing to fold. A later PDU that depends on an earlier one's
 * fate (an auth event, the state across a gap) flushes the batch and waits for it.
 */
import type { PduOutcome } from "./types.ts";

interface Held {
  issue: () => Promise<PduOutcome>;
  resolve: (outcome: PduOutcome) => void;
  reject: (error: unknown) => void;
}

/** The appends of one `handleAll` call (or, `immediate`, of one `handle`). */
export class AppendBatch {
  readonly #held: Held[] = [];
  /** Every event added, by ID: its outcome, failures turned into an error outcome. */
  readonly #outcomes = new Map<string, Promise<PduOutcome>>();

  /** `immediate`: issue each append as it is added (a single PDU has nothing to fold). */
  constructor(private readonly immediate: boolean) {}

  /** Whether `eventId` was added (queued or committed). */
  has(eventId: string): boolean {
    return this.#outcomes.has(eventId);
  }

  /** The outcome of an added event, never rejecting. */
  outcome(eventId: string): Promise<PduOutcome> | undefined {
    return this.#outcomes.get(eventId);
  }

  /** Add an event's append; `issue` starts it. Resolves once it is committed. */
  add(eventId: string, issue: () => Promise<PduOutcome>): Promise<PduOutcome> {
    const outcome = this.immediate
      ? issue()
      : new Promise<PduOutcome>((resolve, reject) => this.#held.push({ issue, resolve, reject }));
    this.#outcomes.set(
      eventId,
      outcome.catch((): PduOutcome => ({ eventId, error: "the event could not be stored" })),
    );
    return outcome;
  }

  /** Start every held append, in the order added (the store keeps that order). */
  flush(): void {
    for (const held of this.#held.splice(0)) held.issue().then(held.resolve, held.reject);
  }

  /** Flush, then wait until `eventIds` (default: all added) are settled. */
  async settle(eventIds?: readonly string[]): Promise<void> {
    this.flush();
    const ids = eventIds ?? [...this.#outcomes.keys()];
    await Promise.all(ids.flatMap((id) => this.#outcomes.get(id) ?? []));
  }
}
