/**
 * One HTTP/1.1 request over TLS to an exact address, with the certificate checked against a
 * name of our choosing. Federation needs what `fetch` cannot give: a server found through SRV
 * is reached at the SRV target's address but must present a certificate for the server name
 * (and the Host header names the server, not the target); and connecting to the very address
 * the private-address guard checked closes the DNS-rebinding gap a second lookup would open.
 *
 * Connections are kept alive and reused for the same address, port, certificate name and CAs
 * (see `IDLE_MS`); responses are read up to a size limit (Content-Length, chunked, or to the end),
 * the whole exchange within a deadline.
 */
import { joinChunks } from "../domain/bytes.ts";

/** Where to connect and what to expect there. */
export interface HttpsTarget {
  /** The IP address to connect to (IPv6 without brackets). */
  readonly address: string;
  readonly port: number;
  /** The name (DNS name or IP literal) the certificate must be valid for; also the SNI. */
  readonly tlsName: string;
  /** The Host header value. */
  readonly hostHeader: string;
}

/** One request. */
export interface HttpsRequest {
  readonly method: string;
  /** Path and query, percent-encoded. */
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array;
  /** CAs trusted beside the system roots (PEM). */
  readonly caCerts?: string[];
  /** The whole exchange, connection to last byte. */
  readonly timeoutMs: number;
  /** Largest response body accepted. */
  readonly maxResponseBytes: number;
}

/** A complete response. */
export interface HttpsResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Uint8Array;
}

/** Why an exchange failed. */
export class HttpsFailure extends Error {
  /** Build from the kind of failure and a message for logs. */
  constructor(readonly kind: "timeout" | "too_large" | "network" | "tls", message: string) {
    super(message);
    this.name = "HttpsFailure";
  }
}

const MAX_HEADER_BYTES = 64 * 1024;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Buffered reads over a connection, counting every byte against a limit. */
class ConnReader {
  #buffer = new Uint8Array(0);
  #eof = false;
  #total = 0;

  constructor(readonly conn: Deno.Conn, readonly limit: number) {}

  /** Bytes received so far. */
  get total(): number {
    return this.#total;
  }

  /** Received but not consumed (a reusable connection has none after a response). */
  get buffered(): number {
    return this.#buffer.length;
  }

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(16 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#total += n;
    if (this.#total > this.limit) {
      throw new HttpsFailure("too_large", `response over ${this.limit} bytes`);
    }
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = next;
    return true;
  }

  /** A line without its CRLF (or LF); throws at the end of the stream or past `max` bytes. */
  async line(max = MAX_HEADER_BYTES): Promise<string> {
    while (true) {
      const at = this.#buffer.indexOf(0x0a);
      if (at !== -1) {
        const end = at > 0 && this.#buffer[at - 1] === 0x0d ? at - 1 : at;
        const text = latin1.decode(this.#buffer.subarray(0, end));
        this.#buffer = this.#buffer.subarray(at + 1);
        return text;
      }
      if (this.#buffer.length > max) throw new HttpsFailure("too_large", "header line too long");
      if (!(await this.#fill())) throw new HttpsFailure("network", "connection closed early");
    }
  }

  /** Exactly `n` bytes. */
  async exact(n: number): Promise<Uint8Array> {
    while (this.#buffer.length < n) {
      if (!(await this.#fill())) throw new HttpsFailure("network", "connection closed early");
    }
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** Up to `max` bytes: what is buffered, else the next read; null at the end of the stream. */
  async piece(max: number): Promise<Uint8Array | null> {
    if (this.#buffer.length === 0 && !(await this.#fill())) return null;
    const n = Math.min(max, this.#buffer.length);
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** Everything until the peer closes. */
  async rest(): Promise<Uint8Array> {
    while (await this.#fill()) { /* read on */ }
    const out = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return out;
  }
}

/** A response, and whether its connection may carry another request. */
interface Exchanged {
  readonly response: HttpsResponse;
  readonly reusable: boolean;
}

/** The status line and header fields of a response, past any 1xx interim responses. */
async function readHead(
  reader: ConnReader,
): Promise<{ status: number; headers: Headers; http11: boolean }> {
  let statusLine = await reader.line();
  let status = 0;
  let headers = new Headers();
  let http11 = false;
  // 1xx interim responses (100 Continue) come before the real one.
  while (true) {
    const match = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(statusLine);
    if (match === null) throw new HttpsFailure("network", "not an HTTP/1.x response");
    http11 = match[1] === "1";
    status = Number(match[2]);
    headers = new Headers();
    let headerBytes = 0;
    while (true) {
      const line = await reader.line();
      if (line === "") break;
      headerBytes += line.length;
      if (headerBytes > MAX_HEADER_BYTES) throw new HttpsFailure("too_large", "headers too large");
      const colon = line.indexOf(":");
      if (colon <= 0) throw new HttpsFailure("network", "malformed header line");
      try {
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      } catch {
        throw new HttpsFailure("network", "malformed header");
      }
    }
    if (status >= 200 || status === 101) break;
    statusLine = await reader.line();
  }
  return { status, headers, http11 };
}

async function readResponse(reader: ConnReader, maxBody: number): Promise<Exchanged> {
  const { status, headers, http11 } = await readHead(reader);
  // Reused only when the response's end is known from its framing, nothing follows it, and the
  // server did not say it closes (HTTP/1.0 closes unless asked otherwise; we never ask).
  const keepsAlive = http11 && status !== 101 &&
    !/(^|,)\s*close\s*(,|$)/i.test(headers.get("connection") ?? "");
  const framed = (response: HttpsResponse): Exchanged => ({
    response,
    reusable: keepsAlive && reader.buffered === 0,
  });
  if (status === 204 || status === 304) {
    return framed({ status, headers, body: new Uint8Array(0) });
  }
  const encoding = headers.get("transfer-encoding");
  if (encoding !== null && /chunked/i.test(encoding)) {
    const chunks: Uint8Array[] = [];
    let size = 0;
    while (true) {
      const sizeLine = (await reader.line()).split(";")[0].trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeLine)) throw new HttpsFailure("network", "bad chunk size");
      const n = parseInt(sizeLine, 16);
      if (n === 0) break;
      size += n;
      if (size > maxBody) throw new HttpsFailure("too_large", `body over ${maxBody} bytes`);
      chunks.push(await reader.exact(n));
      await reader.line();
    }
    // Trailers, up to the empty line.
    while ((await reader.line()) !== "") { /* ignored */ }
    return framed({ status, headers, body: joinChunks(chunks) });
  }
  const length = headers.get("content-length");
  if (length !== null) {
    if (!/^\d{1,12}$/.test(length.trim())) throw new HttpsFailure("network", "bad Content-Length");
    const n = Number(length.trim());
    if (n > maxBody) throw new HttpsFailure("too_large", `body of ${n} bytes`);
    return framed({ status, headers, body: await reader.exact(n) });
  }
  const body = await reader.rest();
  if (body.length > maxBody) throw new HttpsFailure("too_large", `body over ${maxBody} bytes`);
  return { response: { status, headers, body }, reusable: false };
}

/**
 * How long a connection may wait idle for its next request. Each new connection costs a TLS
 * handshake, and the server's handshake flight is written in several records: a peer that does
 * not set TCP_NODELAY on accepted sockets (Deno.serve does not) holds all but the first until our
 * delayed ACK, 40 ms on Linux. Measured between two processes on loopback: about 1 transaction
 * in 8 took 41 ms to connect instead of 1 ms (bench:federation-edus p90 58 ms).
 */
const IDLE_MS = 30_000;
/** Idle connections kept per destination; more are closed when they come back. */
const MAX_IDLE_PER_TARGET = 4;
/**
 * Methods a connection found closed by the peer may retry on a new one (RFC 9110 9.2.2): only
 * these take an idle connection; a POST always opens its own (then leaves it for the next).
 */
const IDEMPOTENT = new Set(["GET", "PUT", "DELETE", "OPTIONS"]);

interface IdleConn {
  readonly conn: Deno.TlsConn;
  readonly timer: ReturnType<typeof setTimeout>;
}
const idle = new Map<string, IdleConn[]>();

function poolKey(target: HttpsTarget, caCerts: readonly string[] | undefined): string {
  return JSON.stringify([target.address, target.port, target.tlsName, caCerts ?? []]);
}

function takeIdle(key: string): Deno.TlsConn | undefined {
  const list = idle.get(key);
  const entry = list?.pop();
  if (list !== undefined && list.length === 0) idle.delete(key);
  if (entry === undefined) return undefined;
  clearTimeout(entry.timer);
  return entry.conn;
}

function putIdle(key: string, conn: Deno.TlsConn): void {
  const list = idle.get(key) ?? [];
  if (list.length >= MAX_IDLE_PER_TARGET) {
    closeQuietly(conn);
    return;
  }
  const timer = setTimeout(() => {
    const now = idle.get(key);
    const at = now?.findIndex((e) => e.conn === conn) ?? -1;
    if (now !== undefined && at !== -1) {
      now.splice(at, 1);
      if (now.length === 0) idle.delete(key);
    }
    closeQuietly(conn);
  }, IDLE_MS);
  // An idle connection never keeps the process alive.
  Deno.unrefTimer(Number(timer));
  list.push({ conn, timer });
  idle.set(key, list);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Close every idle kept-alive connection (tests; a process about to stop). */
export function closeIdleHttpsConnections(): void {
  for (const list of idle.values()) {
    for (const { conn, timer } of list) {
      clearTimeout(timer);
      closeQuietly(conn);
    }
  }
  idle.clear();
}

/** A kept-alive connection the peer had closed before our request reached it. */
class StaleConnection extends Error {}

/**
 * One exchange's deadline and connection: when the deadline passes, the timer aborts a pending
 * connect (a connect to an address that drops SYNs would otherwise wait for the OS, minutes) or
 * closes the connection, whatever stage the exchange is in.
 */
class Attempt {
  timedOut = false;
  stage: "connect" | "tls" | "exchange" = "connect";
  conn: Deno.TlsConn | undefined;
  readonly #connecting = new AbortController();
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(readonly timeoutMs: number) {
    this.#timer = setTimeout(() => {
      this.timedOut = true;
      if (this.stage === "connect") this.#connecting.abort();
      if (this.conn !== undefined) closeQuietly(this.conn);
    }, timeoutMs);
  }

  /** A new TLS connection to `target`, handshake done. */
  async connect(
    target: HttpsTarget,
    caCerts: readonly string[] | undefined,
  ): Promise<Deno.TlsConn> {
    this.stage = "connect";
    const tcp = await Deno.connect({
      hostname: target.address,
      port: target.port,
      signal: this.#connecting.signal,
    });
    // Without it, Nagle's algorithm holds the TLS records after the handshake until the peer's
    // delayed ACK (40 ms on Linux): measured p50 44 ms per request on loopback, 1.3 ms with it.
    tcp.setNoDelay(true);
    if (this.timedOut) {
      closeQuietly(tcp);
      throw new HttpsFailure("timeout", "connect timed out");
    }
    this.stage = "tls";
    this.conn = await Deno.startTls(tcp, {
      hostname: target.tlsName,
      ...(caCerts?.length ? { caCerts: [...caCerts] } : {}),
    });
    await this.conn.handshake();
    this.stage = "exchange";
    return this.conn;
  }

  /** What `error` means for the caller: a timeout once the deadline passed, else its kind. */
  failure(error: unknown): HttpsFailure {
    if (this.timedOut) return new HttpsFailure("timeout", `no answer within ${this.timeoutMs} ms`);
    if (error instanceof HttpsFailure) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new HttpsFailure(this.stage === "tls" ? "tls" : "network", `${this.stage}: ${message}`);
  }

  /** Stop the deadline (the exchange is over). */
  stop(): void {
    clearTimeout(this.#timer);
  }
}

/** The request line and header fields; `accept` is the Accept header. */
function requestHead(target: HttpsTarget, request: HttpsRequest, accept: string): Uint8Array {
  const extra = Object.entries(request.headers ?? {});
  // No header or request line may smuggle a line break into the request.
  for (const text of [request.method, request.path, target.hostHeader, ...extra.flat()]) {
    if (/[\0\r\n]/.test(text)) throw new HttpsFailure("network", "line break in request head");
  }
  return encoder.encode(
    [
      `${request.method} ${request.path} HTTP/1.1`,
      `Host: ${target.hostHeader}`,
      `Accept: ${accept}`,
      ...extra.map(([k, v]) => `${k}: ${v}`),
      ...(request.body !== undefined || request.method !== "GET"
        ? [`Content-Length: ${request.body?.length ?? 0}`]
        : []),
      "",
      "",
    ].join("\r\n"),
  );
}

/** Send one request to `target` over TLS and read the whole response. */
export async function httpsRequest(
  target: HttpsTarget,
  request: HttpsRequest,
): Promise<HttpsResponse> {
  const attempt = new Attempt(request.timeoutMs);
  let reusable = false;
  const key = poolKey(target, request.caCerts);
  try {
    const head = requestHead(target, request, "application/json");
    const pooled = IDEMPOTENT.has(request.method) ? takeIdle(key) : undefined;
    if (pooled !== undefined) {
      attempt.conn = pooled;
      attempt.stage = "exchange";
      try {
        const done = await exchange(pooled, head, request, true);
        reusable = done.reusable;
        return done.response;
      } catch (e) {
        if (!(e instanceof StaleConnection) || attempt.timedOut) throw e;
        closeQuietly(pooled);
        attempt.conn = undefined;
      }
    }
    const conn = await attempt.connect(target, request.caCerts);
    const done = await exchange(conn, head, request, false);
    reusable = done.reusable;
    return done.response;
  } catch (e) {
    reusable = false;
    throw attempt.failure(e);
  } finally {
    attempt.stop();
    if (attempt.conn !== undefined) {
      if (reusable && !attempt.timedOut) putIdle(key, attempt.conn);
      else closeQuietly(attempt.conn);
    }
  }
}

/** A response whose body is read as it arrives. */
export interface HttpsStreamResponse {
  readonly status: number;
  readonly headers: Headers;
  /**
   * The body, framed by Content-Length, chunked coding or the connection's end. Read it to its
   * end or cancel it: either closes the connection. It errors with HttpsFailure when the
   * deadline passes, past `maxResponseBytes`, or when the connection ends before the framing.
   */
  readonly body: ReadableStream<Uint8Array>;
}

/** Largest piece of body handed on at once. */
const STREAM_PIECE_BYTES = 64 * 1024;

/**
 * Send one request to `target` over TLS and stream the response body (remote media): the same
 * connection, head and deadline handling as httpsRequest, on a connection of its own that is
 * closed after the body rather than pooled (a stream may be abandoned half-read). The deadline
 * covers the body too.
 */
export async function httpsRequestStream(
  target: HttpsTarget,
  request: HttpsRequest & { readonly accept?: string },
): Promise<HttpsStreamResponse> {
  const attempt = new Attempt(request.timeoutMs);
  const finish = () => {
    attempt.stop();
    if (attempt.conn !== undefined) closeQuietly(attempt.conn);
  };
  try {
    const head = requestHead(target, request, request.accept ?? "*/*");
    const conn = await attempt.connect(target, request.caCerts);
    await writeAll(conn, head);
    if (request.body !== undefined && request.body.length > 0) await writeAll(conn, request.body);
    const reader = new ConnReader(conn, request.maxResponseBytes + MAX_HEADER_BYTES);
    const { status, headers } = await readHead(reader);
    const pieces = bodyPieces(reader, status, headers, request.method, request.maxResponseBytes);
    // A declared length over the limit fails now, before the caller starts on the body.
    const first = await pieces.next();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.done) {
          finish();
          controller.close();
        } else if (first.value.length > 0) {
          controller.enqueue(first.value);
        }
      },
      async pull(controller) {
        try {
          const { done, value } = await pieces.next();
          if (done) {
            finish();
            controller.close();
          } else {
            controller.enqueue(value);
          }
        } catch (e) {
          const failure = attempt.failure(e);
          finish();
          controller.error(failure);
        }
      },
      cancel() {
        finish();
      },
    }, { highWaterMark: 0 });
    return { status, headers, body };
  } catch (e) {
    const failure = attempt.failure(e);
    finish();
    throw failure;
  }
}

/**
 * The pieces of a response body as its framing delimits them; the first piece may be empty (it
 * is yielded once the framing is known to be acceptable).
 */
async function* bodyPieces(
  reader: ConnReader,
  status: number,
  headers: Headers,
  method: string,
  maxBody: number,
): AsyncGenerator<Uint8Array> {
  if (status === 204 || status === 304 || method === "HEAD") return;
  let size = 0;
  const count = (n: number) => {
    size += n;
    if (size > maxBody) throw new HttpsFailure("too_large", `body over ${maxBody} bytes`);
  };
  const early = () => new HttpsFailure("network", "connection closed early");
  const encoding = headers.get("transfer-encoding");
  if (encoding !== null && /chunked/i.test(encoding)) {
    yield new Uint8Array(0);
    while (true) {
      const sizeLine = (await reader.line()).split(";")[0].trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeLine)) throw new HttpsFailure("network", "bad chunk size");
      let left = parseInt(sizeLine, 16);
      if (left === 0) break;
      count(left);
      while (left > 0) {
        const piece = await reader.piece(Math.min(left, STREAM_PIECE_BYTES));
        if (piece === null) throw early();
        left -= piece.length;
        yield piece;
      }
      await reader.line();
    }
    // Trailers, up to the empty line.
    while ((await reader.line()) !== "") { /* ignored */ }
    return;
  }
  const length = headers.get("content-length");
  if (length !== null) {
    if (!/^\d{1,12}$/.test(length.trim())) throw new HttpsFailure("network", "bad Content-Length");
    let left = Number(length.trim());
    count(left);
    yield new Uint8Array(0);
    while (left > 0) {
      const piece = await reader.piece(Math.min(left, STREAM_PIECE_BYTES));
      if (piece === null) throw early();
      left -= piece.length;
      yield piece;
    }
    return;
  }
  yield new Uint8Array(0);
  while (true) {
    const piece = await reader.piece(STREAM_PIECE_BYTES);
    if (piece === null) return;
    count(piece.length);
    yield piece;
  }
}

/**
 * Write the request on `conn` and read its response. On a kept-alive connection (`pooled`), a
 * failure before any byte of the response came back means the peer closed it while idle: that
 * is a `StaleConnection`, retried once on a new connection.
 */
async function exchange(
  conn: Deno.TlsConn,
  head: Uint8Array,
  request: HttpsRequest,
  pooled: boolean,
): Promise<Exchanged> {
  const reader = new ConnReader(conn, request.maxResponseBytes + MAX_HEADER_BYTES);
  try {
    await writeAll(conn, head);
    if (request.body !== undefined && request.body.length > 0) await writeAll(conn, request.body);
    return await readResponse(reader, request.maxResponseBytes);
  } catch (e) {
    const closedByPeer = !(e instanceof HttpsFailure) || e.message === "connection closed early";
    if (pooled && reader.total === 0 && closedByPeer) throw new StaleConnection();
    throw e;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}
