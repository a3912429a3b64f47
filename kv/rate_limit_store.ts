/**
 * The fleet's rate-limit counters on Deno KV: per (action, key, window) one small entry per
 * writer holding its total, replaced by blind `set`s with an expiry (no check), so flushes from
 * any number of processes never conflict. A read lists one range: every writer's entry of the
 * windows asked for.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { estimateKeyBytes, KV_LIMITS } from "./commit_budget.ts";
import { rateLimitKeys } from "./schema.ts";
import type {
  RateCounterSeries,
  RateCounterTotal,
  RateLimitStore,
} from "../domain/ports/rate_limit_store.ts";

/**
 * Limited keys longer than this are stored by their SHA-256: a key may be an address from a
 * request body, and one too long for KV must not fail the commit carrying everyone's hits.
 */
const MAX_KEY_CHARS = 256;

/** Bytes of a number value and the set's overhead, for the commit's size budget. */
const VALUE_BYTES = 32;

/** The RateLimitStore port over one KV database. */
export class KvRateLimitStore implements RateLimitStore {
  /** Store counters in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See RateLimitStore.readOthers. */
  async readOthers(
    series: RateCounterSeries,
    fromWindow: number,
    toWindow: number,
    exceptWriter: string,
  ): Promise<number[]> {
    const key = storedKey(series.key);
    const counts = new Array<number>(toWindow - fromWindow + 1).fill(0);
    const entries = this.kv.list<number>({
      start: rateLimitKeys.window(series.action, key, series.windowMs, fromWindow),
      end: rateLimitKeys.window(series.action, key, series.windowMs, toWindow + 1),
    });
    for await (const entry of entries) {
      const window = entry.key[4];
      const writer = entry.key[5];
      if (typeof window !== "number" || writer === exceptWriter) continue;
      if (typeof entry.value !== "number" || window < fromWindow || window > toWindow) continue;
      counts[toWindow - window] += entry.value;
    }
    return counts;
  }

  /** See RateLimitStore.writeTotals: one commit unless the totals exceed KV's commit limits. */
  async writeTotals(totals: readonly RateCounterTotal[]): Promise<void> {
    const commits: Deno.AtomicOperation[] = [];
    let op: Deno.AtomicOperation | undefined;
    let mutations = 0;
    let keyBytes = 0;
    let bytes = 0;
    for (const total of totals) {
      const key = rateLimitKeys.counter(
        total.action,
        storedKey(total.key),
        total.windowMs,
        total.window,
        total.writer,
      );
      const size = estimateKeyBytes(key);
      const full = mutations + 1 > KV_LIMITS.mutations || keyBytes + size > KV_LIMITS.keyBytes ||
        bytes + size + VALUE_BYTES > KV_LIMITS.mutationBytes;
      if (op === undefined || full) {
        op = this.kv.atomic();
        commits.push(op);
        mutations = keyBytes = bytes = 0;
      }
      op.set(key, total.total, { expireIn: total.expireInMs });
      mutations++;
      keyBytes += size;
      bytes += size + VALUE_BYTES;
    }
    try {
      await Promise.all(commits.map((commit) => commit.commit()));
    } catch (error) {
      // A closed database: the process is shutting down and its hits no longer matter.
      if (error instanceof Deno.errors.BadResource) return;
      throw error;
    }
  }
}

/** The limited key as stored: long ones by their hash. */
function storedKey(key: string): string {
  if (key.length <= MAX_KEY_CHARS) return key;
  const digest = sha256(new TextEncoder().encode(key));
  return `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
