/**
 * The append path. Appends to one room queue in process and the waiting ones are folded into
 * one `kv.atomic()` commit (group commit), planned through RoomBatchPlanner and kept inside
 * KV's commit limits. The room head's versionstamp check guards against other processes and
 * isolates: when it fails, the batch is replanned against the new head, except a request built
 * on a given head (`expectedHead`, local sends): that one is refused with RoomHeadMoved, so its
 * sender re-authorises it on the new head rather than landing on a state it never checked.
 *
 * Planning waits on as few reads as it can: the head each room's last commit wrote is kept in
 * memory (a stale one only costs a failed check, a re-read and a replan), and which events are
 * stored already, and where the prev events sit, is looked up for the whole batch at once.
 */
import { contentionBackoff, isDatabaseBusy } from "./commit_retry.ts";
import { MatrixError } from "../domain/errors.ts";
import { KeyedDrainQueue, type Queued } from "../domain/keyed_drain_queue.ts";
import {
  type AppendRequest,
  type AppendResult,
  AppendTooLarge,
  RoomHeadMoved,
} from "../domain/ports/event_store.ts";
import { decodeJson } from "./chunked_value.ts";
import {
  applyMutations,
  commitOverLimit,
  measureCommit,
  type PlannedMutation,
} from "./commit_budget.ts";
import { memberWakeUsers } from "./batch_writes.ts";
import { commitWakes, fitWakes } from "./wake_fanout.ts";
import { commitAhead } from "./large_join.ts";
import { LruCache } from "./lru_cache.ts";
import { lookupBatch } from "./batch_lookups.ts";
import { type CommittedHead, RoomBatchPlanner } from "./projections.ts";
import type { StoreContext } from "./store_context.ts";
import type { RoomHead } from "./store_records.ts";

/** Requests folded into one commit at most (the commit limits usually stop it earlier). */
const MAX_BATCH_REQUESTS = 64;
/** Commit attempts before an append gives up; only other processes can make it fail. */
const MAX_ATTEMPTS = 40;
/** Rooms whose last known head is kept; a head is a few hundred bytes. */
const HEAD_CACHE_ROOMS = 4096;

type Pending = Queued<AppendRequest, AppendResult>;

/** Called after each commit that appended to a room. */
export type RoomAppendedListener = (roomId: string, versionstamp: string) => void;

/** Per-room serialised, group-committed appends. */
export class EventLog {
  readonly #queue = new KeyedDrainQueue<AppendRequest, AppendResult>(async (roomId, queue) => {
    const consumed = await this.#commitBatch(roomId, queue.slice(0, MAX_BATCH_REQUESTS));
    queue.splice(0, consumed);
  });
  readonly #listeners = new Set<RoomAppendedListener>();
  /** The newest head known per room: written by our last commit or read after a failed one. */
  readonly #heads = new LruCache<string, CommittedHead>({ capacity: HEAD_CACHE_ROOMS });

  /** Appends go through `ctx`; all instances sharing a database still serialise by head check. */
  constructor(readonly ctx: StoreContext) {}

  /** Queue an append; resolves once its commit has landed. */
  append(request: AppendRequest): Promise<AppendResult> {
    return this.#queue.enqueue(request.roomId, request);
  }

  /** Subscribe to commits; returns the unsubscribe function. */
  onRoomAppended(listener: RoomAppendedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Commit a prefix of `pending`; returns how many requests were settled. */
  async #commitBatch(roomId: string, pending: Pending[]): Promise<number> {
    let maxRequests = pending.length;
    // Take uncached events as new until a commit fails; then read, to tell why it failed.
    let optimistic = true;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (attempt >= 3) await contentionBackoff(attempt);
      const cached = this.#heads.get(roomId);
      const [committed, lookups] = await Promise.all([
        cached ?? this.#readHead(roomId),
        lookupBatch(this.ctx, pending.slice(0, maxRequests).map((p) => p.item), optimistic),
      ]);
      const start = RoomBatchPlanner.fromHead(this.ctx, roomId, committed, lookups);
      const { planner, included, rejected, headMoved, split } = await planBatch(
        start,
        pending,
        maxRequests,
      );
      if (headMoved) {
        // Only what KV holds now can say the head moved: a remembered head may be stale.
        if (cached) {
          this.#heads.delete(roomId);
          continue;
        }
        // Never rebase events built for another head: their sender re-authorises on this one.
        pending[0].reject(new RoomHeadMoved(roomId));
        return 1;
      }
      if (included === 0) return rejected;
      try {
        let mutations;
        if (split) {
          const { bulk, final } = planner.splitMutations();
          // The room got a head meanwhile: replan on it like any failed check.
          if (!(await commitAhead(this.ctx, roomId, bulk))) {
            this.#heads.delete(roomId);
            if (rejected > 0) return rejected;
            continue;
          }
          mutations = final;
        } else mutations = planner.mutations();
        const wakes = memberWakes(planner, mutations);
        const result = await applyMutations(this.ctx.kv.atomic(), [...mutations, ...wakes.now])
          .commit();
        if (result.ok) {
          if (planner.events.size > 0 && planner.head) {
            this.#heads.set(roomId, { head: planner.head, versionstamp: result.versionstamp });
          }
          // Rare (many member events at once): the append resolves once every wake is down.
          await commitWakes(this.ctx.kv, wakes.rest);
          this.#settle(planner, pending.slice(rejected, rejected + included), result.versionstamp);
          return rejected + included;
        }
        // The check failed: whatever head we hold may be stale, so the next attempt re-reads.
        this.#heads.delete(roomId);
      } catch (error) {
        // Whether anything landed is unknown here; the next attempt re-reads the head.
        this.#heads.delete(roomId);
        // Another connection holding the SQLite write lock: wait and replan.
        if (isDatabaseBusy(error)) {
          if (rejected > 0) return rejected;
          await contentionBackoff(attempt + 3);
          continue;
        }
        // KV refused the commit outright: our size estimate was off or an extra mutation is bad.
        if (included > 1) {
          maxRequests = 1;
          if (rejected > 0) return rejected;
          continue;
        }
        pending[rejected].reject(error);
        return rejected + 1;
      }
      // Settled rejections leave the queue first; the rest is replanned from scratch.
      if (rejected > 0) return rejected;
      // One of the events assumed new may be stored: replan with reads before judging.
      if (lookups.assumedNew.size > 0) {
        optimistic = false;
        continue;
      }
      // A check failed. A moved head means another writer: replan. Otherwise an event ID or an
      // extra check conflicts: replanning finds stored duplicates, and requests are committed
      // alone so that a failing extra check is reported to its own request only.
      const head = await this.#readHead(roomId);
      if (head.versionstamp === planner.headVersionstamp) {
        if (included > 1) maxRequests = 1;
        else if (pending[0].item.extraMutations) {
          pending[0].reject(
            new MatrixError("M_UNKNOWN", 409, "A condition of this append no longer holds"),
          );
          return 1;
        }
      }
    }
    pending[0].reject(new MatrixError("M_UNKNOWN", 503, "The room is too busy; try again"));
    return 1;
  }

  /** The head as committed now, remembered for the next batch. */
  async #readHead(roomId: string): Promise<CommittedHead> {
    const entry = await this.ctx.kv.get<RoomHead>(this.ctx.keys.head(roomId));
    const committed = { head: entry.value, versionstamp: entry.versionstamp };
    if (committed.head) this.#heads.set(roomId, committed);
    return committed;
  }

  #settle(planner: RoomBatchPlanner, settled: Pending[], versionstamp: string): void {
    const ctx = this.ctx;
    for (const event of planner.events.values()) {
      ctx.eventGroups.set(event.eventId, event.groups);
      ctx.events.set(event.eventId, {
        eventId: event.eventId,
        roomId: planner.roomId,
        pdu: decodeJson(event.pduBytes),
        status: event.status,
        position: event.position,
        versionstamp,
      });
    }
    planner.groups.publish();
    for (let i = 0; i < settled.length; i++) {
      settled[i].resolve({ events: planner.requests[i].appended, versionstamp });
    }
    for (const listener of this.#listeners) {
      try {
        listener(planner.roomId, versionstamp);
      } catch {
        // A listener's failure must not fail an append that has committed.
      }
    }
  }
}

/**
 * The member events' users' wake keys (batch_writes.ts's memberWakeUsers) that fit beside the
 * batch's `mutations`, and the rest. The batch is planned without them so that a request of
 * many member events (a transaction of joins) fits as it always did; what overflows is bumped
 * in blind commits right after (kv/wake_fanout.ts says why that is still safe).
 */
function memberWakes(
  planner: RoomBatchPlanner,
  mutations: readonly PlannedMutation[],
): { now: PlannedMutation[]; rest: PlannedMutation[] } {
  const userIds = memberWakeUsers(planner);
  if (userIds.length === 0) return { now: [], rest: [] };
  return fitWakes({ userIds }, measureCommit(mutations));
}

/**
 * Plan as many leading requests as fit one commit. A request whose own planning fails is
 * rejected when it comes first; otherwise the batch stops before it. A request built on a head
 * (`expectedHead`) leads its own commit: `headMoved` says the first one is not on that head.
 */
async function planBatch(
  start: RoomBatchPlanner,
  pending: Pending[],
  maxRequests: number,
): Promise<
  {
    planner: RoomBatchPlanner;
    included: number;
    rejected: number;
    headMoved: boolean;
    split: boolean;
  }
> {
  let planner = start;
  let included = 0;
  let rejected = 0;
  for (const queued of pending) {
    if (included >= maxRequests) break;
    const expected = queued.item.expectedHead;
    if (expected !== undefined) {
      if (included > 0 || rejected > 0) break;
      if (start.headVersionstamp !== expected) {
        return { planner, included, rejected, headMoved: true, split: false };
      }
    }
    const next = planner.fork();
    try {
      await next.planRequest(queued.item);
    } catch (error) {
      if (included > 0) break;
      queued.reject(error);
      rejected++;
      continue;
    }
    // Our join to a room we have no head for, from a staged state: its projection entries may
    // go ahead in commits of their own (kv/large_join.ts), so it commits alone.
    const createsHead = next.committedHead === null &&
      queued.item.events.some((e) => e.stateBefore !== undefined);
    if (createsHead && included > 0) break;
    const over = commitOverLimit(next.size());
    if (createsHead && !commitOverLimit(measureCommit(next.splitMutations().final))) {
      return { planner: next, included: 1, rejected, headMoved: false, split: true };
    }
    if (over) {
      if (included > 0) break;
      // Typed, so a caller holding several events can append them in parts instead.
      const { roomId, events } = queued.item;
      queued.reject(new AppendTooLarge(roomId, events.length, over));
      rejected++;
      continue;
    }
    planner = next;
    included++;
  }
  return { planner, included, rejected, headMoved: false, split: false };
}
