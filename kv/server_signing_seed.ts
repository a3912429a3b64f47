/**
 * The server's signing key seed, kept in KV so every isolate and every restart signs with the
 * same key unless the operator supplies one through TESSERA_SIGNING_KEY.
 */
import { commitOrConflict, contentionBackoff } from "./commit_retry.ts";
import { serverSigningSeedKey } from "./schema.ts";

/** An Ed25519 seed is 32 bytes. */
const SEED_BYTES = 32;

/**
 * Return the stored seed, creating it from `generate()` on first start. The create is an
 * atomic check on an absent key, so isolates cold-starting together agree on one seed: the
 * first commit wins, every other caller's check fails and it returns the winner's seed.
 * A stored value that is not a 32-byte seed is an error, never overwritten: replacing it
 * would change the server's key under every signature made with it.
 */
export async function loadOrCreateSigningSeed(
  kv: Deno.Kv,
  generate: () => Uint8Array,
): Promise<Uint8Array> {
  const key = serverSigningSeedKey();
  // A lost race re-reads the winner's seed. On a local KV file another process's commit can
  // also fail ours with SQLite's busy error before anything is stored; that is retried too.
  for (let attempt = 1; attempt <= 20; attempt++) {
    const existing = await kv.get<unknown>(key);
    if (existing.versionstamp !== null) return storedSeed(existing.value);
    const seed = generate();
    const result = await commitOrConflict(kv.atomic().check(existing).set(key, seed));
    if (result.ok) return seed;
    await contentionBackoff(attempt);
  }
  throw new Error("could not store the server signing seed");
}

/** The stored seed, if one was ever created; never creates one (scripts/signing_key.ts). */
export async function readStoredSigningSeed(kv: Deno.Kv): Promise<Uint8Array | undefined> {
  const existing = await kv.get<unknown>(serverSigningSeedKey());
  return existing.versionstamp === null ? undefined : storedSeed(existing.value);
}

function storedSeed(value: unknown): Uint8Array {
  if (value instanceof Uint8Array && value.length === SEED_BYTES) return value;
  throw new Error(
    `the stored server signing seed is not ${SEED_BYTES} bytes; set TESSERA_SIGNING_KEY or repair it`,
  );
}
