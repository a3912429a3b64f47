/**
 * Outbox streams in KV. Per stream kind and destination: entries under
 * `outbox_entry/stream/destination/...order`, a pending marker rewritten by every append (a
 * blind set, so appends never conflict with each other or with the sender), and a state record
 * holding the sender's lease and the backoff, changed only under a versionstamp check. Every
 * append also bumps the stream's wake key (kv/wake_keys.ts), a blind set like the marker, so the
 * senders of other processes learn of it without polling.
 */
import type { CommitMutation } from "../domain/ports/event_store.ts";
import type {
  OutboxAppend,
  OutboxEntry,
  OutboxLease,
  OutboxState,
  OutboxStore,
} from "../domain/ports/outbox_store.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import { estimateKeyBytes, KV_LIMITS } from "./commit_budget.ts";
import { outboxKeys } from "./schema.ts";
import { wakeKey } from "./wake_keys.ts";

/** Mutations per commit of `append` and `acknowledge`, within KV's 1,000. */
const WRITES_PER_COMMIT = 400;

type CommitKey = CommitMutation["key"];

const FREE: OutboxState = { holder: "", leaseUntil: 0, failures: 0, retryAt: 0 };

/** The KV adapter of one outbox stream kind. */
export class KvOutboxStore implements OutboxStore {
  /** The `stream` kind (such as "push") over an open KV database. */
  constructor(private readonly kv: Deno.Kv, private readonly stream: string) {}

  mutations(entries: readonly OutboxAppend[]): CommitMutation[] {
    const out: CommitMutation[] = [];
    const marked = new Set<string>();
    for (const e of entries) {
      out.push({
        op: "set",
        key: outboxKeys.entry(this.stream, e.destination, e.order) as CommitKey,
        value: e.payload,
      });
      if (marked.has(e.destination)) continue;
      marked.add(e.destination);
      out.push({
        op: "set",
        key: outboxKeys.pending(this.stream, e.destination) as CommitKey,
        value: 1,
      });
    }
    if (out.length > 0) {
      // The same write as addWakes', as a mutation for a commit built elsewhere.
      out.push({
        op: "set",
        key: wakeKey({ kind: "outbox", stream: this.stream }) as CommitKey,
        value: 0,
      });
    }
    return out;
  }

  async append(entries: readonly OutboxAppend[]): Promise<void> {
    await this.#commitInParts(this.mutations(entries));
  }

  async pending(limit: number, after?: string): Promise<{ destination: string; mark: string }[]> {
    const prefix = outboxKeys.pendingPrefix(this.stream);
    const selector = after === undefined
      ? { prefix }
      : { prefix, start: [...outboxKeys.pending(this.stream, after), 0] };
    const out: { destination: string; mark: string }[] = [];
    for await (const entry of this.kv.list(selector, { limit })) {
      out.push({
        destination: entry.key[entry.key.length - 1] as string,
        mark: entry.versionstamp,
      });
    }
    return out;
  }

  async peek(destination: string, limit: number): Promise<OutboxEntry[]> {
    const prefix = outboxKeys.entryPrefix(this.stream, destination);
    const out: OutboxEntry[] = [];
    for await (const entry of this.kv.list<JsonObject>({ prefix }, { limit })) {
      out.push({
        ref: entry.key.slice(prefix.length) as (string | number)[],
        payload: entry.value,
      });
    }
    return out;
  }

  async acknowledge(destination: string, refs: readonly OutboxEntry["ref"][]): Promise<void> {
    await this.#commitInParts(refs.map((ref) => ({
      op: "delete",
      key: outboxKeys.entry(this.stream, destination, ref) as CommitKey,
    })));
  }

  async clearPending(destination: string, mark: string): Promise<void> {
    const key = outboxKeys.pending(this.stream, destination);
    // Only when the stream is really empty: an entry written after the peek keeps the marker.
    if ((await this.peek(destination, 1)).length > 0) return;
    await this.kv.atomic().check({ key, versionstamp: mark }).delete(key).commit();
  }

  async lease(
    destination: string,
    holder: string,
    now: number,
    leaseUntil: number,
  ): Promise<OutboxLease | null> {
    const key = outboxKeys.state(this.stream, destination);
    const current = await this.kv.get<OutboxState>(key);
    const state = current.value ?? FREE;
    // A running lease binds its own holder too: two passes of one sender must not overlap.
    if (state.leaseUntil > now) return null;
    if (state.retryAt > now) return null;
    const next: OutboxState = { ...state, holder, leaseUntil };
    const result = await this.kv.atomic().check(current).set(key, next).commit();
    return result.ok ? { destination, state: next, versionstamp: result.versionstamp } : null;
  }

  async resetRetry(destination: string): Promise<boolean> {
    const key = outboxKeys.state(this.stream, destination);
    for (;;) {
      const current = await this.kv.get<OutboxState>(key);
      const state = current.value;
      if (!state || (state.failures === 0 && state.retryAt === 0)) return false;
      const op = this.kv.atomic().check(current);
      // The lease fields stay: a running sender keeps its stream, and `release` sees the reset.
      if (state.leaseUntil === 0) op.delete(key);
      else op.set(key, { ...state, failures: 0, retryAt: 0 } satisfies OutboxState);
      if ((await op.commit()).ok) return true;
    }
  }

  async release(lease: OutboxLease, outcome: { failures: number; retryAt: number }): Promise<void> {
    const key = outboxKeys.state(this.stream, lease.destination);
    const op = this.kv.atomic().check({ key, versionstamp: lease.versionstamp });
    // A free destination with no backoff needs no record at all.
    if (outcome.failures === 0) op.delete(key);
    else op.set(key, { holder: "", leaseUntil: 0, ...outcome } satisfies OutboxState);
    if ((await op.commit()).ok) return;
    // Only `resetRetry` rewrites a record under a running lease, keeping holder and expiry: the
    // lease is still ours, and the reset (a sign of life from the destination) wins over the
    // failures this pass counted.
    const current = await this.kv.get<OutboxState>(key);
    const state = current.value;
    if (state?.holder !== lease.state.holder || state.leaseUntil !== lease.state.leaseUntil) return;
    await this.kv.atomic().check(current).delete(key).commit();
  }

  async dropDestination(destination: string): Promise<void> {
    const prefix = outboxKeys.entryPrefix(this.stream, destination);
    const keys: Deno.KvKey[] = [];
    for await (const entry of this.kv.list({ prefix })) keys.push(entry.key);
    await this.#commitInParts(keys.map((key) => ({ op: "delete", key: key as CommitKey })));
    await this.kv.atomic()
      .delete(outboxKeys.pending(this.stream, destination))
      .delete(outboxKeys.state(this.stream, destination))
      .commit();
  }

  async nextDue(now: number): Promise<number | null> {
    let next: number | null = null;
    // Only destinations backed off or leased have a record: few, unless many servers are down.
    const prefix = outboxKeys.statePrefix(this.stream);
    for await (const entry of this.kv.list<OutboxState>({ prefix })) {
      const at = Math.max(entry.value.leaseUntil, entry.value.retryAt);
      if (at > now && (next === null || at < next)) next = at;
    }
    return next;
  }

  async #commitInParts(mutations: readonly CommitMutation[]): Promise<void> {
    let op = this.kv.atomic();
    let count = 0;
    let keyBytes = 0;
    for (const m of mutations) {
      const bytes = estimateKeyBytes(m.key as Deno.KvKey);
      if (count === WRITES_PER_COMMIT || keyBytes + bytes > KV_LIMITS.keyBytes) {
        await op.commit();
        op = this.kv.atomic();
        count = 0;
        keyBytes = 0;
      }
      if (m.op === "set") op.set(m.key as Deno.KvKey, m.value);
      else if (m.op === "delete") op.delete(m.key as Deno.KvKey);
      count++;
      keyBytes += bytes;
    }
    if (count > 0) await op.commit();
  }
}
