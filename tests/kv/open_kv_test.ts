/** Opening KV: local files get their folder, KV Connect URLs are never taken for paths. */
import { assertEquals, assertRejects } from "../assert.ts";
import { openKv } from "../../kv/open_kv.ts";

Deno.test("a file path gets its folder created", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kv = await openKv(`${dir}/nested/deeper/t.kv`);
    await kv.set(["k"], 1);
    kv.close();
    assertEquals((await Deno.stat(`${dir}/nested/deeper/t.kv`)).isFile, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a KV Connect URL goes to Deno.openKv as a URL: no folder is made from it", async () => {
  // Port 9 (discard) refuses at once here; without DENO_KV_ACCESS_TOKEN Deno refuses earlier.
  // Either way the open fails, and before it no "http:" folder may appear (the old code made
  // one from the URL's "path").
  await assertRejects(
    () => openKv("http://127.0.0.1:9/tessera"),
    /DENO_KV_ACCESS_TOKEN|connect/i,
  );
  assertEquals(await exists(`${Deno.cwd()}/http:`), false);
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
