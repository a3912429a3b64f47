/**
 * Values larger than one KV value (64 KiB) stored as a run of byte chunks: the first rides in
 * its owner's record, the rest under continuation keys. Bytes rather than strings because KV
 * may store a string as UTF-16, doubling its size unpredictably.
 */
import { joinChunks } from "../domain/bytes.ts";

/** Bytes per chunk: leaves room beside the first chunk for its record's other fields. */
export const CHUNK_BYTES = 60_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encode a JSON-compatible value as UTF-8 bytes. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Decode UTF-8 JSON bytes. */
export function decodeJson<T>(bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes)) as T;
}

/** Split bytes into chunks of at most CHUNK_BYTES (at least one chunk, maybe empty). */
export function splitChunks(bytes: Uint8Array, size = CHUNK_BYTES): Uint8Array[] {
  if (bytes.byteLength <= size) return [bytes];
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.byteLength; offset += size) {
    // slice, not subarray: KV serialises a view's whole underlying buffer.
    chunks.push(bytes.slice(offset, Math.min(offset + size, bytes.byteLength)));
  }
  return chunks;
}

/** Join chunks back into one byte array (shared with the other layers). */
export { joinChunks };

/**
 * Read a chunked value: `first` from its record, the continuation chunks (indexes 1..count-1)
 * from one prefix listing. Throws when a chunk is missing, since that means a torn store.
 */
export async function readChunks(
  kv: Deno.Kv,
  first: Uint8Array,
  count: number,
  continuationPrefix: Deno.KvKey,
): Promise<Uint8Array> {
  if (count <= 1) return first;
  const chunks = [first];
  for await (const entry of kv.list<Uint8Array>({ prefix: continuationPrefix })) {
    chunks.push(entry.value);
  }
  if (chunks.length !== count) {
    throw new Error(`chunked value under ${JSON.stringify(continuationPrefix)} is incomplete`);
  }
  return joinChunks(chunks);
}
