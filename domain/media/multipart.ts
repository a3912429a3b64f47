/**
 * `multipart/mixed` (RFC 2046 section 5.1) as the federation media endpoints use it: a writer
 * that streams parts out, and a streaming reader that hands each part's body over as a stream,
 * so a 100 MB part never sits in memory. Only what media needs: no nested multiparts, no
 * content-transfer-encodings (federation sends binary parts as they are).
 */
import { splitHeaderParameters } from "./header_parameters.ts";

/** Malformed multipart input: a missing boundary, a truncated body, oversize headers. */
export class MultipartError extends Error {
  /** Build with a message for logs. */
  constructor(message: string) {
    super(message);
    this.name = "MultipartError";
  }
}

/** One part to write: its header fields in order, and its body. */
export interface OutgoingPart {
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array | ReadableStream<Uint8Array>;
}

/** One part read: its header fields, and its body as a stream (read it before the next part). */
export interface IncomingPart {
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array>;
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
/** RFC 2046 bchars: what a boundary may hold (a space only inside, never last). */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;
/** A part's header section; federation sends two or three short fields. */
const MAX_HEADER_BYTES = 16 * 1024;
/** Text before the first delimiter, which RFC 2046 says to ignore (but not without end). */
const MAX_PREAMBLE_BYTES = 16 * 1024;

/** A fresh random boundary: 32 hex digits, which no body will contain by chance. */
export function randomBoundary(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The boundary parameter of a `multipart/mixed` Content-Type; null when it is not one. */
export function multipartBoundary(contentType: string | null | undefined): string | null {
  if (contentType === null || contentType === undefined) return null;
  const [type, ...params] = splitHeaderParameters(contentType);
  if (type.trim().toLowerCase() !== "multipart/mixed") return null;
  for (const param of params) {
    const eq = param.indexOf("=");
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== "boundary") continue;
    let value = param.slice(eq + 1).trim();
    if (value.startsWith('"')) {
      if (!value.endsWith('"') || value.length < 2) return null;
      value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    }
    return BOUNDARY.test(value) ? value : null;
  }
  return null;
}

/**
 * The `multipart/mixed` body of `parts` under `boundary`, streamed: each part's head, then its
 * body piped through as it arrives, then the close delimiter. A part's stream that fails fails
 * the whole body (the reader sees a truncated multipart, never a complete wrong one).
 */
export function writeMultipart(
  boundary: string,
  parts: readonly OutgoingPart[],
): ReadableStream<Uint8Array> {
  if (!BOUNDARY.test(boundary)) throw new MultipartError("invalid boundary");
  for (const part of parts) {
    for (const [name, value] of part.headers) {
      if (/[\0\r\n:]/.test(name) || /[\0\r\n]/.test(value)) {
        throw new MultipartError("line break in a part header");
      }
    }
  }
  let index = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let closed = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (true) {
        if (reader !== undefined) {
          const { done, value } = await reader.read();
          if (!done) {
            if (value.byteLength > 0) {
              controller.enqueue(value);
              return;
            }
            continue;
          }
          reader = undefined;
          index++;
        }
        if (index >= parts.length) {
          if (!closed) {
            closed = true;
            controller.enqueue(encoder.encode(`\r\n--${boundary}--\r\n`));
          }
          controller.close();
          return;
        }
        const part = parts[index];
        // The first delimiter needs no CRLF before it; each later one ends the previous body.
        const head = (index === 0 ? "" : "\r\n") + `--${boundary}\r\n` +
          part.headers.map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
        controller.enqueue(encoder.encode(head));
        if (part.body instanceof Uint8Array) {
          if (part.body.byteLength > 0) controller.enqueue(part.body);
          index++;
        } else {
          reader = part.body.getReader();
        }
        return;
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
      // Bodies never started are cancelled too, so their sources are released.
      for (let i = index + 1; i < parts.length; i++) {
        const body = parts[i].body;
        if (!(body instanceof Uint8Array)) await body.cancel(reason);
      }
    },
  });
}

/**
 * Reads a `multipart/mixed` body part by part. `next()` gives the next part (null after the
 * close delimiter); each part's body must be read to its end (or cancelled, which cancels the
 * whole input) before `next()` is called again. Input ending before the close delimiter is a
 * MultipartError, surfaced through the part body being read or through `next()`.
 */
export class MultipartReader {
  readonly #source: ReadableStreamDefaultReader<Uint8Array>;
  readonly #delimiter: Uint8Array;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;
  #state: "start" | "part_open" | "between" | "done" = "start";

  /** Read `body` with `boundary` (from `multipartBoundary`). */
  constructor(body: ReadableStream<Uint8Array>, boundary: string) {
    if (!BOUNDARY.test(boundary)) throw new MultipartError("invalid boundary");
    this.#source = body.getReader();
    this.#delimiter = encoder.encode(`\r\n--${boundary}`);
  }

  /** The next part, or null when the close delimiter has been read. */
  async next(): Promise<IncomingPart | null> {
    if (this.#state === "part_open") {
      throw new MultipartError("the previous part's body was not read to its end");
    }
    if (this.#state === "done") return null;
    if (this.#state === "start") {
      await this.#skipPreamble();
      if (await this.#afterDelimiter()) return this.#finish();
    }
    const headers = await this.#readHeaders();
    this.#state = "part_open";
    return { headers, body: this.#bodyStream() };
  }

  /** Release the input (after the last part wanted, or on giving up). */
  async cancel(reason?: unknown): Promise<void> {
    this.#state = "done";
    await this.#source.cancel(reason).catch(() => {});
  }

  async #finish(): Promise<null> {
    this.#state = "done";
    // The epilogue is to be ignored; stop reading so a long one costs nothing.
    await this.#source.cancel().catch(() => {});
    return null;
  }

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const { done, value } = await this.#source.read();
    if (done) {
      this.#eof = true;
      return false;
    }
    if (value.byteLength === 0) return true;
    if (this.#buffer.byteLength === 0) {
      this.#buffer = value;
    } else {
      const next = new Uint8Array(this.#buffer.byteLength + value.byteLength);
      next.set(this.#buffer);
      next.set(value, this.#buffer.byteLength);
      this.#buffer = next;
    }
    return true;
  }

  /**
   * Drop the preamble up to and including the first `--boundary`, which may open the body
   * directly (no CRLF before it) or follow a line of preamble.
   */
  async #skipPreamble(): Promise<void> {
    const dashBoundary = this.#delimiter.subarray(2);
    while (true) {
      if (startsWith(this.#buffer, dashBoundary)) {
        this.#buffer = this.#buffer.subarray(dashBoundary.byteLength);
        return;
      }
      const at = indexOf(this.#buffer, this.#delimiter, 0);
      if (at !== -1) {
        this.#buffer = this.#buffer.subarray(at + this.#delimiter.byteLength);
        return;
      }
      if (this.#buffer.byteLength > MAX_PREAMBLE_BYTES + this.#delimiter.byteLength) {
        throw new MultipartError("no boundary where the body should start");
      }
      if (!(await this.#fill())) throw new MultipartError("body ended before any part");
    }
  }

  /**
   * Just after a delimiter: `--` closes the multipart (true); otherwise transport padding and a
   * line break open the next part's headers (false).
   */
  async #afterDelimiter(): Promise<boolean> {
    while (this.#buffer.byteLength < 2) {
      if (!(await this.#fill())) throw new MultipartError("body ended after a delimiter");
    }
    if (this.#buffer[0] === 0x2d && this.#buffer[1] === 0x2d) return true;
    while (true) {
      let i = 0;
      while (
        i < this.#buffer.byteLength && (this.#buffer[i] === 0x20 || this.#buffer[i] === 0x09)
      ) {
        i++;
      }
      if (i < this.#buffer.byteLength) {
        if (this.#buffer[i] === 0x0a) {
          this.#buffer = this.#buffer.subarray(i + 1);
          return false;
        }
        if (this.#buffer[i] === 0x0d) {
          if (i + 1 < this.#buffer.byteLength) {
            if (this.#buffer[i + 1] !== 0x0a) {
              throw new MultipartError("bad line after a delimiter");
            }
            this.#buffer = this.#buffer.subarray(i + 2);
            return false;
          }
        } else {
          throw new MultipartError("bad line after a delimiter");
        }
      }
      if (i > 1024) throw new MultipartError("transport padding too long");
      if (!(await this.#fill())) throw new MultipartError("body ended after a delimiter");
    }
  }

  /** Header fields up to the empty line (CRLF or bare LF line ends are both taken). */
  async #readHeaders(): Promise<Headers> {
    const headers = new Headers();
    let size = 0;
    while (true) {
      const at = this.#buffer.indexOf(0x0a);
      if (at === -1) {
        if (this.#buffer.byteLength + size > MAX_HEADER_BYTES) {
          throw new MultipartError("part headers too large");
        }
        if (!(await this.#fill())) throw new MultipartError("body ended in part headers");
        continue;
      }
      const end = at > 0 && this.#buffer[at - 1] === 0x0d ? at - 1 : at;
      const line = latin1.decode(this.#buffer.subarray(0, end));
      this.#buffer = this.#buffer.subarray(at + 1);
      size += at + 1;
      if (size > MAX_HEADER_BYTES) throw new MultipartError("part headers too large");
      if (line === "") return headers;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new MultipartError("malformed part header");
      try {
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      } catch {
        throw new MultipartError("malformed part header");
      }
    }
  }

  /** The current part's body up to the next delimiter, streamed. */
  #bodyStream(): ReadableStream<Uint8Array> {
    const delimiter = this.#delimiter;
    let ended = false;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (ended) return;
        while (true) {
          const at = indexOf(this.#buffer, delimiter, 0);
          if (at !== -1) {
            if (at > 0) controller.enqueue(this.#buffer.slice(0, at));
            this.#buffer = this.#buffer.subarray(at + delimiter.byteLength);
            ended = true;
            try {
              if (await this.#afterDelimiter()) await this.#finish();
              else this.#state = "between";
              controller.close();
            } catch (e) {
              controller.error(e);
            }
            return;
          }
          // All but a tail that might be the start of a delimiter can go on now, in one piece
          // (the buffer holds at most one read of the input besides that tail, and was just
          // searched whole: handing it on in smaller pieces would search it again each time).
          const safe = this.#buffer.byteLength - (delimiter.byteLength - 1);
          if (safe > 0) {
            controller.enqueue(this.#buffer.slice(0, safe));
            this.#buffer = this.#buffer.subarray(safe);
            return;
          }
          let more: boolean;
          try {
            more = await this.#fill();
          } catch (e) {
            ended = true;
            controller.error(e);
            return;
          }
          if (!more) {
            ended = true;
            this.#state = "done";
            controller.error(new MultipartError("body ended inside a part"));
            return;
          }
        }
      },
      cancel: async (reason) => {
        ended = true;
        await this.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** First index of `needle` in `haystack` at or after `from`; -1 when absent. */
function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.byteLength - needle.byteLength;
  let i = from;
  while (i <= last) {
    i = haystack.indexOf(first, i);
    if (i === -1 || i > last) return -1;
    let j = 1;
    while (j < needle.byteLength && haystack[i + j] === needle[j]) j++;
    if (j === needle.byteLength) return i;
    i++;
  }
  return -1;
}
