/**
 * Deno KV's key order, for merge-joining two listings. Parts compare first by type (bytes,
 * string, bigint, number, boolean, as the tuple encoding tags them), then by value; strings by
 * their UTF-8 bytes, which is what KV compares.
 */

const encoder = new TextEncoder();

function rank(part: Deno.KvKeyPart): number {
  if (part instanceof Uint8Array) return 0;
  if (typeof part === "string") return 1;
  if (typeof part === "bigint") return 2;
  if (typeof part === "number") return 3;
  return 4;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Negative, zero or positive as `a` sorts before, with or after `b`. */
export function compareKeyParts(a: Deno.KvKeyPart, b: Deno.KvKeyPart): number {
  const byRank = rank(a) - rank(b);
  if (byRank !== 0) return byRank;
  if (typeof a === "string") {
    const b2 = b as string;
    if (a === b2) return 0;
    return compareBytes(encoder.encode(a), encoder.encode(b2));
  }
  if (a instanceof Uint8Array) return compareBytes(a, b as Uint8Array);
  if (typeof a === "boolean") return Number(a) - Number(b as boolean);
  const x = a as number | bigint;
  const y = b as number | bigint;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Negative, zero or positive as key `a` sorts before, with or after key `b`. */
export function compareKeys(a: Deno.KvKey, b: Deno.KvKey): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = compareKeyParts(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}
