/** `kv.getMany` for any number of keys: KV takes ten per call, so chunks are read in parallel. */

/** Largest key count one `getMany` accepts. */
export const GET_MANY_LIMIT = 10;

/** Read `keys` in chunks of ten, in parallel; entries come back in the order of `keys`. */
export async function getManyChunked<T>(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<T>[]> {
  // Lookups on the append path mostly find nothing, so the next read often has no keys.
  if (keys.length === 0) return [];
  const chunks: Promise<Deno.KvEntryMaybe<T>[]>[] = [];
  for (let i = 0; i < keys.length; i += GET_MANY_LIMIT) {
    chunks.push(kv.getMany<T[]>(keys.slice(i, i + GET_MANY_LIMIT)));
  }
  return (await Promise.all(chunks)).flat();
}
