import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  multipartBoundary,
  MultipartError,
  MultipartReader,
  randomBoundary,
  writeMultipart,
} from "../../../domain/media/multipart.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A stream giving `bytes` in pieces of `size` bytes (1 splits every delimiter byte by byte). */
function streamOf(bytes: Uint8Array, size = bytes.byteLength || 1): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Every part of `body`, bodies read whole. */
async function readAll(body: Uint8Array, boundary: string, piece?: number) {
  const reader = new MultipartReader(streamOf(body, piece), boundary);
  const parts: { headers: Record<string, string>; body: Uint8Array }[] = [];
  while (true) {
    const part = await reader.next();
    if (part === null) return parts;
    parts.push({ headers: Object.fromEntries(part.headers), body: await collect(part.body) });
  }
}

Deno.test("multipartBoundary reads quoted and bare boundaries of multipart/mixed only", () => {
  assertEquals(multipartBoundary("multipart/mixed; boundary=abc123"), "abc123");
  assertEquals(multipartBoundary('Multipart/Mixed; charset=x; boundary="a b:c"'), "a b:c");
  assertEquals(multipartBoundary('multipart/mixed; boundary="a;b"'), null);
  assertEquals(multipartBoundary("multipart/mixed"), null);
  assertEquals(multipartBoundary("multipart/form-data; boundary=abc"), null);
  assertEquals(multipartBoundary("application/json"), null);
  assertEquals(multipartBoundary(null), null);
  // Over 70 characters, or ending in a space, is not a boundary.
  assertEquals(multipartBoundary(`multipart/mixed; boundary=${"a".repeat(71)}`), null);
  assertEquals(multipartBoundary('multipart/mixed; boundary="abc "'), null);
});

Deno.test("what writeMultipart writes, MultipartReader reads back, at any read size", async () => {
  const boundary = randomBoundary();
  const media = new Uint8Array(200_000).map((_, i) => (i * 7919) % 251);
  // A body holding the boundary text without the CRLF before it is still one body.
  media.set(encoder.encode(`--${boundary}`), 1000);
  media.set(encoder.encode(`\r\n--${boundary.slice(0, 20)}`), 5000);
  const written = await collect(writeMultipart(boundary, [
    { headers: [["Content-Type", "application/json"]], body: encoder.encode("{}") },
    {
      headers: [["Content-Type", "image/png"], ["Content-Disposition", "inline"]],
      body: streamOf(media, 7000),
    },
  ]));
  for (const piece of [3, 4096, written.byteLength]) {
    const parts = await readAll(written, boundary, piece);
    assertEquals(parts.length, 2);
    assertEquals(parts[0].headers, { "content-type": "application/json" });
    assertEquals(decoder.decode(parts[0].body), "{}");
    assertEquals(parts[1].headers["content-type"], "image/png");
    assertEquals(parts[1].headers["content-disposition"], "inline");
    assertEquals(parts[1].body, media);
  }
});

Deno.test("the reader skips a preamble and an epilogue, takes padding and bare-LF headers", async () => {
  const text = "This is a preamble.\r\n--xyz  \t\r\nContent-Type: application/json\n\n{}" +
    "\r\n--xyz\r\nLocation: https://example.org/x\r\n\r\n" +
    "\r\n--xyz--\r\nthe epilogue, ignored";
  const parts = await readAll(encoder.encode(text), "xyz", 1);
  assertEquals(parts.length, 2);
  assertEquals(decoder.decode(parts[0].body), "{}");
  assertEquals(parts[1].headers, { location: "https://example.org/x" });
  assertEquals(parts[1].body.byteLength, 0);
});

Deno.test("a body that ends before the close delimiter is an error, never a short part", async () => {
  const full = "--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n" +
    "Content-Type: text/plain\r\n\r\nhello world\r\n--b--\r\n";
  // Cut after the second part's bytes but before its closing delimiter.
  const cut = full.indexOf("hello world") + "hello world".length;
  const reader = new MultipartReader(streamOf(encoder.encode(full.slice(0, cut)), 4), "b");
  const first = await reader.next();
  assertEquals(decoder.decode(await collect(first!.body)), "{}");
  const second = await reader.next();
  await assertRejects(() => collect(second!.body), /ended inside a part/);
  // Cut in the headers of a part.
  const headersCut = full.slice(0, full.indexOf("text/plain"));
  const inHeaders = new MultipartReader(streamOf(encoder.encode(headersCut)), "b");
  await collect((await inHeaders.next())!.body);
  await assertRejects(() => inHeaders.next(), /ended in part headers/);
  // No delimiter at all.
  const none = new MultipartReader(streamOf(encoder.encode("just some text")), "b");
  await assertRejects(() => none.next(), /ended before any part/);
});

Deno.test("the reader refuses a huge preamble, huge headers and malformed header lines", async () => {
  const preamble = new MultipartReader(streamOf(new Uint8Array(100_000).fill(0x41), 1000), "b");
  await assertRejects(() => preamble.next(), /no boundary/);
  const longHeader = `--b\r\nX-Long: ${"a".repeat(20_000)}\r\n\r\n`;
  const headers = new MultipartReader(streamOf(encoder.encode(longHeader), 512), "b");
  await assertRejects(() => headers.next(), /headers too large/);
  const noColon = new MultipartReader(streamOf(encoder.encode("--b\r\nnot a header\r\n\r\n")), "b");
  await assertRejects(() => noColon.next(), /malformed part header/);
  const afterDelimiter = new MultipartReader(streamOf(encoder.encode("--bX\r\n\r\n")), "b");
  await assertRejects(() => afterDelimiter.next(), /bad line after a delimiter/);
});

Deno.test("next() before the previous body was read is refused; cancel releases the input", async () => {
  let cancelled = false;
  let sent = false;
  // An input still open after its first chunk (a slow remote server).
  const wrapped = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) controller.enqueue(encoder.encode("--b\r\n\r\nabc\r\n--b\r\n\r\ndef"));
      sent = true;
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = new MultipartReader(wrapped, "b");
  const part = await reader.next();
  await assertRejects(() => reader.next(), /not read to its end/);
  await part!.body.cancel();
  assert(cancelled);
});

Deno.test("writeMultipart refuses header injection and bad boundaries", () => {
  let error: unknown;
  try {
    writeMultipart("b", [{
      headers: [["Content-Type", "text/plain\r\nX-Evil: 1"]],
      body: new Uint8Array(),
    }]);
  } catch (e) {
    error = e;
  }
  assert(error instanceof MultipartError);
  error = undefined;
  try {
    writeMultipart("bad boundary ", []);
  } catch (e) {
    error = e;
  }
  assert(error instanceof MultipartError);
});
