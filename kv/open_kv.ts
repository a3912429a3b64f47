/**
 * Opening Deno KV: a local file (its folder created on demand), `:memory:`, a KV Connect URL
 * (a self-hosted denokv or a Deno Deploy database reached from outside), or Deploy's own.
 */
import { isKvConnectUrl } from "../domain/config_placement.ts";
import { retryingBusyCommits } from "./busy_retry_kv.ts";

/**
 * Open KV at `path`; with no path, the platform default (Deno Deploy's managed database). A KV
 * Connect URL authenticates with DENO_KV_ACCESS_TOKEN, which Deno reads from the environment.
 */
export async function openKv(path?: string): Promise<Deno.Kv> {
  if (path === undefined) return await Deno.openKv();
  if (path !== ":memory:" && !isKvConnectUrl(path)) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
    // A file other processes may share: SQLite's busy refusals are retried (busy_retry_kv.ts).
    return retryingBusyCommits(await Deno.openKv(path));
  }
  return await Deno.openKv(path);
}
