/**
 * Latest-value records with a change index ordered by commit versionstamp: each write replaces
 * the record and moves its one index entry to the writing commit's versionstamp, so the index
 * holds one entry per record and "changed since a sync token" is one range read.
 *
 * The record's own versionstamp names its index entry (both land in one commit), which is how a
 * write finds the entry it replaces without another lookup.
 */
import { contentionError } from "./commit_retry.ts";
import { parseSyncToken } from "./stream_tokens.ts";

/** What one write puts down; `extra` adds mutations to the same commit. */
export interface VersionedWrite<T> {
  key: Deno.KvKey;
  value: T;
  changePrefix: Deno.KvKey;
  /** Index entry value; defaults to `value`. */
  changeValue?: unknown;
  extra?: (op: Deno.AtomicOperation) => void;
}

/**
 * Read the record, let `plan` decide the write (null: write nothing), and commit it with its
 * index entry, retrying when a concurrent write lands first. Returns the commit versionstamp.
 */
export async function writeVersioned<T>(
  kv: Deno.Kv,
  key: Deno.KvKey,
  plan: (current: T | null) => VersionedWrite<T> | null,
): Promise<string | null> {
  for (let attempt = 0; attempt < 64; attempt++) {
    const current = await kv.get<T>(key);
    const write = plan(current.value);
    if (!write) return null;
    const op = kv.atomic().check(current);
    if (current.versionstamp !== null) op.delete([...write.changePrefix, current.versionstamp]);
    op.set(write.key, write.value);
    op.set([...write.changePrefix, kv.commitVersionstamp()], write.changeValue ?? write.value);
    write.extra?.(op);
    const result = await op.commit();
    if (result.ok) return result.versionstamp;
  }
  throw contentionError(`writing ${JSON.stringify(key)}`);
}

/**
 * Index entries written after sync token `sinceToken` (all when absent) and not after `upToToken`.
 */
export async function listChanges<V>(
  kv: Deno.Kv,
  changePrefix: Deno.KvKey,
  sinceToken: string | undefined,
  upToToken: string,
): Promise<{ versionstamp: string; value: V }[]> {
  const since = sinceToken === undefined ? undefined : parseSyncToken(sinceToken);
  const upTo = parseSyncToken(upToToken);
  const selector = since === undefined
    ? { prefix: changePrefix }
    : { prefix: changePrefix, start: [...changePrefix, since] };
  const out: { versionstamp: string; value: V }[] = [];
  for await (const entry of kv.list<V>(selector)) {
    const stamp = entry.key[entry.key.length - 1] as string;
    if (stamp === since) continue;
    if (stamp > upTo) break;
    out.push({ versionstamp: stamp, value: entry.value });
  }
  return out;
}
