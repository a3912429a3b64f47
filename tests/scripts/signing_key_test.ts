/**
 * `deno task signing-key`: a fresh seed the configuration accepts, and the seed a server kept in
 * KV printed unchanged (to move it into TESSERA_SIGNING_KEY without changing the server's key).
 */
import { assert, assertEquals } from "../assert.ts";
import { loadConfig } from "../../domain/config.ts";
import { encodeBase64Unpadded } from "../../domain/protocol/base64.ts";
import { generateSigningSeed } from "../../domain/protocol/signing.ts";
import { loadOrCreateSigningSeed } from "../../kv/server_signing_seed.ts";

const script = new URL("../../scripts/signing_key.ts", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-net", script, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("signing-key prints a new 32-byte seed TESSERA_SIGNING_KEY accepts, each time another", async () => {
  const [a, b] = await Promise.all([run([]), run([])]);
  assertEquals(a.code, 0, a.stderr);
  assertEquals(a.stdout.length, 43);
  assert(a.stdout !== b.stdout);
  const config = loadConfig({ TESSERA_SIGNING_KEY: a.stdout }, { dev: false });
  assertEquals(encodeBase64Unpadded(config.signingKeySeed!), a.stdout);
});

Deno.test("signing-key --stored prints the seed kept in KV, and refuses a missing store", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.kv`;
    const missing = await run(["--stored", path]);
    assertEquals(missing.code, 1);
    assert(/no KV file/.test(missing.stderr), missing.stderr);
    const kv = await Deno.openKv(path);
    const empty = await run(["--stored"], { TESSERA_KV_PATH: path });
    assertEquals(empty.code, 1);
    assert(/no signing seed is stored/.test(empty.stderr), empty.stderr);
    const seed = await loadOrCreateSigningSeed(kv, generateSigningSeed);
    kv.close();
    const stored = await run(["--stored", path]);
    assertEquals(stored.code, 0, stored.stderr);
    assertEquals(stored.stdout, encodeBase64Unpadded(seed));
    const bad = await run(["--stored", path, "extra"]);
    assertEquals(bad.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
