/**
 * Deno KV's per-commit limits and a conservative size estimate of planned writes, so group
 * commit can fold waiting appends into one commit without ever being refused for size.
 */

/** One planned write or check of an atomic commit. */
export type PlannedMutation =
  | { op: "set"; key: Deno.KvKey; value: unknown }
  | { op: "delete"; key: Deno.KvKey }
  /** KV's commutative add: concurrent commits adding to one counter never conflict. */
  | { op: "sum"; key: Deno.KvKey; value: bigint }
  | { op: "check"; key: Deno.KvKey; versionstamp: string | null };

/** Measured limits of Deno 2.9 KV, with margins where our estimate is approximate. */
export const KV_LIMITS = {
  mutations: 1000,
  checks: 100,
  /** 800 KiB, less a margin for estimate error. */
  mutationBytes: 800 * 1024 - 16 * 1024,
  /** 80 KiB of keys, less a margin. */
  keyBytes: 80 * 1024 - 2 * 1024,
  valueBytes: 65_536,
  keyPartBytes: 2048,
} as const;

/** Running totals of a commit's size. */
export interface CommitSize {
  mutations: number;
  checks: number;
  mutationBytes: number;
  keyBytes: number;
}

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += c === 0 ? 2 : 1; // NUL is escaped in keys
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Upper bound of a key's encoded size (tuple encoding: tag, bytes, terminator). */
export function estimateKeyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) {
    if (typeof part === "string") n += utf8Length(part) + 2;
    else if (part instanceof Uint8Array) n += part.byteLength * 2 + 2;
    else if (typeof part === "bigint") n += 2 + Math.ceil(part.toString(16).length / 2) + 1;
    else if (typeof part === "number") n += 9;
    else n += 1;
  }
  return n;
}

/**
 * Upper bound of a value's stored size: raw bytes for Uint8Array, otherwise V8 serialisation,
 * counted as if every string were two-byte.
 */
export function estimateValueBytes(value: unknown): number {
  // A view inside a record is serialised with its whole buffer; a top-level one as its bytes.
  if (value instanceof Uint8Array) return value.buffer.byteLength + 24;
  if (typeof value === "string") return value.length * 2 + 8;
  if (typeof value === "number" || typeof value === "bigint") return 12;
  if (value === null || value === undefined || typeof value === "boolean") return 2;
  if (Array.isArray(value)) {
    let n = 12;
    for (const item of value) n += estimateValueBytes(item);
    return n;
  }
  if (typeof value === "object") {
    let n = 12;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      n += k.length * 2 + 8 + estimateValueBytes(v);
    }
    return n;
  }
  return 64;
}

/** The estimated size of a list of planned mutations. */
export function measureCommit(mutations: readonly PlannedMutation[]): CommitSize {
  const size: CommitSize = { mutations: 0, checks: 0, mutationBytes: 0, keyBytes: 0 };
  for (const m of mutations) {
    const keyBytes = estimateKeyBytes(m.key);
    size.keyBytes += keyBytes;
    if (m.op === "check") {
      size.checks++;
      continue;
    }
    size.mutations++;
    size.mutationBytes += keyBytes +
      (m.op === "set" ? estimateValueBytes(m.value) : m.op === "sum" ? 12 : 0);
  }
  return size;
}

/** Why a commit of this size would be refused, or null when it fits. */
export function commitOverLimit(size: CommitSize): string | null {
  if (size.mutations > KV_LIMITS.mutations) return `${size.mutations} mutations`;
  if (size.checks > KV_LIMITS.checks) return `${size.checks} checks`;
  if (size.mutationBytes > KV_LIMITS.mutationBytes) return `${size.mutationBytes} bytes`;
  if (size.keyBytes > KV_LIMITS.keyBytes) return `${size.keyBytes} bytes of keys`;
  return null;
}

/** Add planned mutations to an atomic operation. */
export function applyMutations(
  atomic: Deno.AtomicOperation,
  mutations: readonly PlannedMutation[],
): Deno.AtomicOperation {
  for (const m of mutations) {
    if (m.op === "set") atomic.set(m.key, m.value);
    else if (m.op === "delete") atomic.delete(m.key);
    else if (m.op === "sum") atomic.sum(m.key, m.value);
    else atomic.check({ key: m.key, versionstamp: m.versionstamp });
  }
  return atomic;
}

/** The size of two sets of mutations in one commit. */
export function addCommitSizes(a: CommitSize, b: CommitSize): CommitSize {
  return {
    mutations: a.mutations + b.mutations,
    checks: a.checks + b.checks,
    mutationBytes: a.mutationBytes + b.mutationBytes,
    keyBytes: a.keyBytes + b.keyBytes,
  };
}

/**
 * Writes what one commit cannot hold (a join's outliers, a staged state) in as many commits as
 * KV's limits need: each group of writes handed to `add` lands whole in one commit, and every
 * commit starts with the same checks (`checks`), so a condition guards each part alike.
 */
export class SplitCommitWriter {
  readonly #kv: Deno.Kv;
  readonly #checks: readonly PlannedMutation[];
  readonly #checkSize: CommitSize;
  #batch: PlannedMutation[] = [];
  #size: CommitSize;

  /** Commit through `kv`, each commit beginning with `checks`. */
  constructor(kv: Deno.Kv, checks: readonly PlannedMutation[] = []) {
    this.#kv = kv;
    this.#checks = checks;
    this.#checkSize = measureCommit(checks);
    this.#size = this.#checkSize;
  }

  /** Add a group of writes, committing what came before when they would not fit beside it. */
  async add(writes: readonly PlannedMutation[]): Promise<boolean> {
    const own = measureCommit(writes);
    const next = addCommitSizes(this.#size, own);
    if (commitOverLimit(next) !== null && this.#batch.length > 0) {
      if (!(await this.flush())) return false;
      this.#size = addCommitSizes(this.#checkSize, own);
    } else this.#size = next;
    this.#batch.push(...writes);
    return true;
  }

  /** Commit what is waiting; false when a check failed (nothing of that commit was written). */
  async flush(): Promise<boolean> {
    if (this.#batch.length === 0) return true;
    const result = await applyMutations(this.#kv.atomic(), [...this.#checks, ...this.#batch])
      .commit();
    this.#batch = [];
    this.#size = this.#checkSize;
    return result.ok;
  }
}
