/**
 * Streamed federation answers (remote media): httpsRequestStream against real TLS servers, the
 * client's signed requestStream, and followLocation's address guard on every redirect hop.
 */
import assert from "node:assert/strict";
import { createTestCa } from "../federation/test_certificates.ts";
import { rawTlsServer } from "./raw_tls_server.ts";
import {
  HttpsFailure,
  type HttpsRequest,
  httpsRequestStream,
  type HttpsStreamResponse,
  type HttpsTarget,
} from "../../outbound/federation_https.ts";
import { FederationClient } from "../../outbound/federation_client.ts";
import { KvWellKnownCache } from "../../kv/well_known_cache.ts";
import { FederationUnreachable } from "../../domain/ports/federation_transport.ts";
import { parseXMatrix } from "../../domain/federation/request_auth.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../domain/protocol/signing.ts";

const ca = await createTestCa();
const leaf = await ca.issue({ dns: ["localhost"], ips: ["127.0.0.1"] });
const base = { timeoutMs: 5000, maxResponseBytes: 1024 * 1024, caCerts: [ca.caPem] };
const encode = (text: string) => new TextEncoder().encode(text);
const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:a");

/** A TLS server on loopback answering with `handler`. */
function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    handler,
  );
  const target: HttpsTarget = {
    address: "127.0.0.1",
    port: server.addr.port,
    tlsName: "localhost",
    hostHeader: "localhost",
  };
  return { port: server.addr.port, target, stop: () => server.shutdown() };
}

/** A raw TLS server writing `reply` on each connection after reading the request head. */
function rawServer(reply: (conn: Deno.Conn) => Promise<void>) {
  return rawTlsServer(leaf, async (conn) => {
    await conn.read(new Uint8Array(64 * 1024));
    await reply(conn);
  });
}

/** Read a stream whole, counting the pieces it came in. */
async function drain(body: ReadableStream<Uint8Array>) {
  let pieces = 0;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) {
    pieces++;
    chunks.push(chunk);
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return { pieces, bytes: all };
}

Deno.test("httpsRequestStream hands a long or chunked body over in pieces", async () => {
  const big = new Uint8Array(500_000).map((_, i) => i % 253);
  const server = serve((req) => {
    if (new URL(req.url).pathname === "/chunked") {
      let left = 5;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (left-- === 0) return c.close();
            c.enqueue(big.subarray(0, 100_000));
          },
        }),
        { headers: { "content-type": "image/png" } },
      );
    }
    return new Response(big, { headers: { "x-media": "yes" } });
  });
  try {
    const whole = await httpsRequestStream(server.target, { ...base, method: "GET", path: "/" });
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get("x-media"), "yes");
    const read = await drain(whole.body);
    assert.deepEqual(read.bytes, big);
    assert.ok(read.pieces > 2, `${read.pieces} pieces`);
    const chunked = await httpsRequestStream(server.target, {
      ...base,
      method: "GET",
      path: "/chunked",
    });
    assert.equal(chunked.headers.get("content-type"), "image/png");
    assert.equal((await drain(chunked.body)).bytes.length, 500_000);
  } finally {
    await server.stop();
  }
});

Deno.test("httpsRequestStream: a declared length over the limit fails at once, a stream past it while read", async () => {
  const server = serve((req) => {
    if (new URL(req.url).pathname === "/chunked") {
      let left = 20;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (left-- === 0) return c.close();
            c.enqueue(new Uint8Array(10_000));
          },
        }),
      );
    }
    return new Response(new Uint8Array(200_000));
  });
  try {
    await assert.rejects(
      httpsRequestStream(server.target, {
        ...base,
        maxResponseBytes: 100_000,
        method: "GET",
        path: "/",
      }),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
    const chunked = await httpsRequestStream(server.target, {
      ...base,
      maxResponseBytes: 100_000,
      method: "GET",
      path: "/chunked",
    });
    await assert.rejects(
      drain(chunked.body),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("httpsRequestStream: a body cut short errors the stream; a stalled one times out", async () => {
  let mode = "short";
  const server = rawServer(async (conn) => {
    await conn.write(encode("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
    await conn.write(new Uint8Array(100));
    // "short" closes now; "stall" waits past the client's deadline.
    if (mode === "stall") await new Promise((r) => setTimeout(r, 1000));
  });
  try {
    const short = await httpsRequestStream(server.target, { ...base, method: "GET", path: "/" });
    await assert.rejects(
      drain(short.body),
      (e) => e instanceof HttpsFailure && e.kind === "network",
    );
    mode = "stall";
    const stalled = await httpsRequestStream(server.target, {
      ...base,
      timeoutMs: 300,
      method: "GET",
      path: "/",
    });
    await assert.rejects(
      drain(stalled.body),
      (e) => e instanceof HttpsFailure && e.kind === "timeout",
    );
  } finally {
    await server.stop();
  }
});

async function client(options: {
  allowPrivate: boolean;
  resolve?: (host: string) => Promise<string[]>;
  exchangeStream?: typeof httpsRequestStream;
}) {
  const kv = await Deno.openKv(":memory:");
  const federation = new FederationClient({
    serverName: "us.example",
    signingKey: key,
    allowPrivate: options.allowPrivate,
    caCerts: [ca.caPem],
    wellKnownCache: new KvWellKnownCache(kv),
    ...(options.resolve ? { resolve: options.resolve } : {}),
    ...(options.exchangeStream ? { exchangeStream: options.exchangeStream } : {}),
  });
  return { federation, [Symbol.dispose]: () => kv.close() };
}

Deno.test("requestStream signs for the destination and streams the answer", async () => {
  let auth: string | null = null;
  const server = serve((req) => {
    auth = req.headers.get("authorization");
    return new Response(new Uint8Array(300_000).fill(7), {
      headers: { "content-type": "multipart/mixed; boundary=x" },
    });
  });
  using t = await client({ allowPrivate: true });
  try {
    const destination = `127.0.0.1:${server.port}`;
    const response = await t.federation.requestStream({
      method: "GET",
      destination,
      path: "/_matrix/federation/v1/media/download/abc",
      maxResponseBytes: 1_000_000,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "multipart/mixed; boundary=x");
    assert.equal((await drain(response.body)).bytes.length, 300_000);
    const parsed = parseXMatrix(auth ?? "");
    assert.equal(parsed?.origin, "us.example");
    assert.equal(parsed?.destination, destination);
    // Past the limit, the error a reader sees is the port's.
    const limited = await t.federation.requestStream({
      method: "GET",
      destination,
      path: "/_matrix/federation/v1/media/download/abc",
      maxResponseBytes: 1000,
    }).catch((e) => e);
    assert.ok(limited instanceof FederationUnreachable && limited.failure === "too_large");
  } finally {
    await server.stop();
  }
});

Deno.test("followLocation: unsigned, HTTPS only, redirects followed, private hops refused", async () => {
  const seen: { host: string; auth: string | null }[] = [];
  const server = serve((req) => {
    const url = new URL(req.url);
    seen.push({ host: url.pathname, auth: req.headers.get("authorization") });
    if (url.pathname === "/hop") {
      return new Response(null, { status: 302, headers: { location: "/media" } });
    }
    return new Response("the bytes", { headers: { "content-type": "text/plain" } });
  });
  try {
    {
      using t = await client({ allowPrivate: true });
      const response = await t.federation.followLocation(
        `https://127.0.0.1:${server.port}/hop`,
        { maxResponseBytes: 1000 },
      );
      assert.equal(response.status, 200);
      assert.equal(new TextDecoder().decode((await drain(response.body)).bytes), "the bytes");
      assert.deepEqual(seen, [{ host: "/hop", auth: null }, { host: "/media", auth: null }]);
      await assert.rejects(
        t.federation.followLocation(`http://127.0.0.1:${server.port}/media`, {
          maxResponseBytes: 1000,
        }),
        (e) => e instanceof FederationUnreachable && e.failure === "refused",
      );
    }
    {
      // Without the test flag, loopback is refused before any connection.
      using t = await client({ allowPrivate: false });
      seen.length = 0;
      for (const url of [`https://127.0.0.1:${server.port}/media`, "https://localhost/x"]) {
        await assert.rejects(
          t.federation.followLocation(url, { maxResponseBytes: 1000 }),
          (e) => e instanceof FederationUnreachable && e.failure === "refused",
        );
      }
      assert.deepEqual(seen, []);
    }
  } finally {
    await server.stop();
  }
  // A public host redirecting inwards: the second hop is refused, never connected to.
  const hops: string[] = [];
  const exchangeStream = (target: HttpsTarget, request: HttpsRequest) => {
    hops.push(`${target.address}${request.path}`);
    const response: HttpsStreamResponse = {
      status: 302,
      headers: new Headers({ location: "https://internal.example/secret" }),
      body: new ReadableStream({ start: (c) => c.close() }),
    };
    return Promise.resolve(response);
  };
  using t = await client({
    allowPrivate: false,
    resolve: (host) =>
      Promise.resolve(host === "internal.example" ? ["10.0.0.5"] : ["93.184.216.34"]),
    exchangeStream,
  });
  await assert.rejects(
    t.federation.followLocation("https://cdn.example/media", { maxResponseBytes: 1000 }),
    (e) => e instanceof FederationUnreachable && e.failure === "refused",
  );
  assert.deepEqual(hops, ["93.184.216.34/media"]);
});
