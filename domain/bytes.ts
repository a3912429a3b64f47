/**
 * Byte arrays in pieces: joining chunks, and reading a stream whole up to a bound. Pure helpers
 * the layers share (KV values in chunks, request and response bodies, image containers).
 */

/** Join chunks into one byte array; a single chunk is returned as it is, not copied. */
export function joinChunks(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const total = chunks.reduce((sum, c) => sum + c.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * Read `stream` to its end, at most `maxBytes` bytes; null (and the stream cancelled) as soon as
 * it goes past that, so an oversize body is never read further or held in memory. The result
 * is always a fresh array whose buffer holds exactly its bytes (callers may keep `.buffer`).
 */
export async function readStreamUpTo(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return all;
}
