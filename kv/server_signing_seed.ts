/**
 * The server's signing key seed, kept in KV so every isolate and every restart signs with the
 * same key unless the operator supplies one through TESSERA_SIGNING_KEY.
 */
import { serverSigningSeedKey } from "./schema.ts";

/**
 * Return the stored seed, creating it from `generate()` on first start. The create is an
 * atomic check on an absent key, so two isolates starting together agree on one seed.
 */
export async function loadOrCreateSigningSeed(
  kv: Deno.Kv,
  generate: () => Uint8Array,
): Promise<Uint8Array> {
  const key = serverSigningSeedKey();
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = await kv.get<Uint8Array>(key);
    if (existing.value) return existing.value;
    const seed = generate();
    const result = await kv.atomic().check(existing).set(key, seed).commit();
    if (result.ok) return seed;
  }
  throw new Error("could not store the server signing seed");
}
