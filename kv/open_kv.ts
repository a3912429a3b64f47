/** Opening Deno KV: a local file (its folder created on demand), `:memory:`, or Deploy's own. */

/** Open KV at `path`; with no path, the platform default (Deno Deploy's managed database). */
export async function openKv(path?: string): Promise<Deno.Kv> {
  if (path === undefined) return await Deno.openKv();
  if (path !== ":memory:") {
    const slash = path.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  }
  return await Deno.openKv(path);
}
