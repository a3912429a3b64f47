/**
 * The signing seed kept in KV when TESSERA_SIGNING_KEY is unset: isolates (or processes) that
 * cold-start together on one database must end up with ONE seed, whichever commit lands first.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { loadOrCreateSigningSeed } from "../../kv/server_signing_seed.ts";
import { serverSigningSeedKey } from "../../kv/schema.ts";
import { encodeBase64Unpadded as encodeBase64 } from "../../domain/protocol/base64.ts";

/** A generator that counts its calls and hands out distinct seeds. */
function countingGenerator() {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    generate: () => {
      calls++;
      const seed = new Uint8Array(32);
      seed[0] = calls;
      crypto.getRandomValues(seed.subarray(1));
      return seed;
    },
  };
}

Deno.test("concurrent first starts on one KV agree on one seed, the one stored", async () => {
  using kv = await Deno.openKv(":memory:");
  const generator = countingGenerator();
  const seeds = await Promise.all(
    Array.from({ length: 16 }, () => loadOrCreateSigningSeed(kv, generator.generate)),
  );
  // Every caller read the absent key before any commit landed, so each made a seed of its own
  // and raced to store it: the race this test is about did happen.
  assert(generator.calls > 1, `expected racing creators, got ${generator.calls}`);
  const stored = (await kv.get<Uint8Array>(serverSigningSeedKey())).value;
  assert(stored instanceof Uint8Array && stored.length === 32);
  for (const seed of seeds) assertEquals(encodeBase64(seed), encodeBase64(stored));
});

Deno.test("two handles on one KV file (two processes' view) agree on one seed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/seed.kv`;
    using a = await Deno.openKv(path);
    using b = await Deno.openKv(path);
    const seeds = await Promise.all([
      loadOrCreateSigningSeed(a, countingGenerator().generate),
      loadOrCreateSigningSeed(b, countingGenerator().generate),
      loadOrCreateSigningSeed(a, countingGenerator().generate),
      loadOrCreateSigningSeed(b, countingGenerator().generate),
    ]);
    assertEquals(new Set(seeds.map(encodeBase64)).size, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("processes started at once on one KV file sign with one seed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/seed.kv`;
    const script = `
      import { loadOrCreateSigningSeed } from "./kv/server_signing_seed.ts";
      import { generateSigningSeed } from "./domain/protocol/signing.ts";
      import { encodeBase64Unpadded as encodeBase64 } from "./domain/protocol/base64.ts";
      const kv = await Deno.openKv(${JSON.stringify(path)});
      console.log(encodeBase64(await loadOrCreateSigningSeed(kv, generateSigningSeed)));
      kv.close();
    `;
    const runs = Array.from({ length: 4 }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--unstable-kv", "--ext=ts", script],
        cwd: new URL("../../", import.meta.url).pathname,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output());
    const outputs = await Promise.all(runs);
    const seeds = outputs.map((out) => {
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout).trim();
    });
    assertEquals(seeds[0].length, 43);
    assertEquals(new Set(seeds).size, 1);
    using kv = await Deno.openKv(path);
    const stored = (await kv.get<Uint8Array>(serverSigningSeedKey())).value;
    assertEquals(encodeBase64(stored!), seeds[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a stored seed is returned as is, without generating", async () => {
  using kv = await Deno.openKv(":memory:");
  const first = await loadOrCreateSigningSeed(kv, countingGenerator().generate);
  const generator = countingGenerator();
  const again = await loadOrCreateSigningSeed(kv, generator.generate);
  assertEquals(generator.calls, 0);
  assertEquals(encodeBase64(again), encodeBase64(first));
});

Deno.test("a stored value that is not a 32-byte seed is refused and left as it is", async () => {
  using kv = await Deno.openKv(":memory:");
  await kv.set(serverSigningSeedKey(), new Uint8Array(16));
  await assertRejects(
    () => loadOrCreateSigningSeed(kv, countingGenerator().generate),
    /not 32 bytes/,
  );
  assertEquals((await kv.get<Uint8Array>(serverSigningSeedKey())).value?.length, 16);
});
