/**
 * What every optimistic KV writer shares: telling a lost race from a real failure, and spreading
 * retries out so the same writers do not keep colliding.
 */
import { MatrixError } from "../domain/errors.ts";

/**
 * SQLite's busy error: two connections (processes) wrote one local database file. Nothing of
 * the failed commit was written, so it is a lost race like a failed check.
 */
export function isDatabaseBusy(error: unknown): boolean {
  return error instanceof Error && /database is locked|SQLITE_BUSY/i.test(error.message);
}

/** Commit `op`, reporting a busy database as a failed check (the caller reads again). */
export async function commitOrConflict(
  op: Deno.AtomicOperation,
): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
  try {
    return await op.commit();
  } catch (error) {
    if (isDatabaseBusy(error)) return { ok: false };
    throw error;
  }
}

/** A random pause growing with `attempt`, up to 50 ms. */
export function contentionBackoff(attempt: number): Promise<void> {
  const ms = Math.random() * Math.min(50, 2 ** (attempt - 2));
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The error for a write that kept losing races to other writers: 503, which clients retry after
 * a pause, rather than a 500 that says the server is broken.
 */
export function contentionError(what: string): MatrixError {
  return new MatrixError("M_UNKNOWN", 503, `Too busy ${what}; try again`);
}

/**
 * Read the record at `key` and delete it in one checked commit, for single-use records (parked
 * requests, sign-in flows, approvals): of racing takers exactly one gets it. A taker whose
 * commit lost reads again, and finds nothing once the winner's delete has landed.
 */
export async function takeOnce<T>(kv: Deno.Kv, key: Deno.KvKey): Promise<T | null> {
  for (;;) {
    const entry = await kv.get<T>(key);
    if (entry.value === null) return null;
    const result = await kv.atomic().check(entry).delete(key).commit();
    if (result.ok) return entry.value;
  }
}
