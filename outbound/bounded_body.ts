/**
 * Reading a whole response body with a size bound, for the outbound clients that need a body in
 * memory (JSON answers, previewed pages, error bodies): a remote server must not be able to make
 * us buffer more than we chose to.
 */

/**
 * Read `stream` to its end, at most `maxBytes` bytes; null (and the stream cancelled) as soon as
 * it goes past that, so an oversize body is never read further.
 */
export async function readBoundedBytes(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array | null> {
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
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return all;
}
