/**
 * A local KV file shared by several processes (a local fleet, issue 12) is one SQLite database
 * with one connection per process. SQLite refuses a write transaction that has read (every
 * commit with a `check`) when another connection wrote meanwhile: the commit throws "database is
 * locked" at once, without waiting. Measured with three processes committing checked writes to
 * keys of their own: about 100 such errors per successful commit in a tight loop. Nothing of a
 * refused commit was written, so committing the same operation again is exactly the first
 * attempt (its checks are checked again).
 *
 * Rather than each of the many writers in kv/ handling it (a handful do, with commitOrConflict),
 * the handle `openKv` returns for a local file retries such commits itself, with the same
 * growing random backoff as lost races. Only when it keeps failing does the error reach the
 * writer, as before.
 */
import { contentionBackoff, isDatabaseBusy } from "./commit_retry.ts";

/** Commits refused by the busy database are tried this many times in all. */
export const BUSY_COMMIT_ATTEMPTS = 40;

/**
 * `kv` with every `atomic()` operation's `commit()` retried while SQLite reports the database
 * busy (at most `attempts` tries in all); everything else passes straight through.
 */
export function retryingBusyCommits(kv: Deno.Kv, attempts = BUSY_COMMIT_ATTEMPTS): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") return () => retryingOperation(target.atomic(), attempts);
      const value = Reflect.get(target, prop, target);
      // Deno.Kv's methods use private fields: call them on the handle itself.
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function retryingOperation(op: Deno.AtomicOperation, attempts: number): Deno.AtomicOperation {
  const proxy: Deno.AtomicOperation = new Proxy(op, {
    get(target, prop) {
      if (prop === "commit") return () => commitRetryingBusy(target, attempts);
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      // The builder methods return the operation for chaining: hand back the proxy instead,
      // so a chain's final `commit()` is the retrying one.
      return (...args: unknown[]) => {
        const result = value.apply(target, args);
        return result === target ? proxy : result;
      };
    },
  });
  return proxy;
}

async function commitRetryingBusy(
  op: Deno.AtomicOperation,
  attempts: number,
): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op.commit();
    } catch (error) {
      if (!isDatabaseBusy(error) || attempt >= attempts) throw error;
      await contentionBackoff(attempt + 2);
    }
  }
}
