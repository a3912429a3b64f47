/** The federation HTTPS exchange against a real TLS server with a throwaway CA. */
import assert from "node:assert/strict";
import { createTestCa } from "../federation/test_certificates.ts";
import { rawTlsServer } from "./raw_tls_server.ts";
import {
  closeIdleHttpsConnections,
  HttpsFailure,
  httpsRequest,
  type HttpsTarget,
} from "../../outbound/federation_https.ts";

const ca = await createTestCa();
const leaf = await ca.issue({ dns: ["localhost"], ips: ["127.0.0.1"] });
const otherCa = await createTestCa();

/** A TLS server on loopback answering with `handler`; returns its port and a stop function. */
function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    handler,
  );
  return { port: server.addr.port, stop: () => server.shutdown() };
}

const base = { timeoutMs: 5000, maxResponseBytes: 1024 * 1024, caCerts: [ca.caPem] };

Deno.test("a request reaches the server with our Host header, method and body", async () => {
  const server = serve(async (req) =>
    Response.json({
      host: req.headers.get("host"),
      method: req.method,
      url: new URL(req.url).pathname + new URL(req.url).search,
      body: await req.text(),
      auth: req.headers.get("authorization"),
    })
  );
  try {
    for (const tlsName of ["127.0.0.1", "localhost"]) {
      const target: HttpsTarget = {
        address: "127.0.0.1",
        port: server.port,
        tlsName,
        hostHeader: "example.org",
      };
      const res = await httpsRequest(target, {
        ...base,
        method: "PUT",
        path: "/_matrix/federation/v1/send/a%20b?x=1",
        headers: { authorization: "X-Matrix origin=a", "content-type": "application/json" },
        body: new TextEncoder().encode('{"a":1}'),
      });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(new TextDecoder().decode(res.body)), {
        host: "example.org",
        method: "PUT",
        url: "/_matrix/federation/v1/send/a%20b?x=1",
        body: '{"a":1}',
        auth: "X-Matrix origin=a",
      });
    }
  } finally {
    await server.stop();
  }
});

Deno.test("chunked and unknown-length bodies are read whole; oversize ones refused", async () => {
  const big = "x".repeat(300_000);
  const server = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/stream") {
      // No length: Deno.serve sends it chunked.
      const body = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode("hello "));
          c.enqueue(new TextEncoder().encode("world"));
          c.close();
        },
      });
      return new Response(body, { status: 201 });
    }
    return new Response(big, { status: 404, headers: { "x-test": "yes" } });
  });
  const target = {
    address: "127.0.0.1",
    port: server.port,
    tlsName: "localhost",
    hostHeader: "localhost",
  };
  try {
    const stream = await httpsRequest(target, { ...base, method: "GET", path: "/stream" });
    assert.equal(stream.status, 201);
    assert.equal(new TextDecoder().decode(stream.body), "hello world");
    const whole = await httpsRequest(target, { ...base, method: "GET", path: "/big" });
    assert.equal(whole.status, 404);
    assert.equal(whole.body.length, big.length);
    assert.equal(whole.headers.get("x-test"), "yes");
    await assert.rejects(
      httpsRequest(target, { ...base, maxResponseBytes: 1000, method: "GET", path: "/big" }),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
    await assert.rejects(
      httpsRequest(target, { ...base, maxResponseBytes: 5, method: "GET", path: "/stream" }),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("a certificate for another name, or from an untrusted CA, fails as tls", async () => {
  const server = serve(() => new Response("{}"));
  try {
    const target = {
      address: "127.0.0.1",
      port: server.port,
      tlsName: "other.example",
      hostHeader: "x",
    };
    await assert.rejects(
      httpsRequest(target, { ...base, method: "GET", path: "/" }),
      (e) => e instanceof HttpsFailure && e.kind === "tls",
    );
    await assert.rejects(
      httpsRequest({ ...target, tlsName: "localhost" }, {
        ...base,
        caCerts: [otherCa.caPem],
        method: "GET",
        path: "/",
      }),
      (e) => e instanceof HttpsFailure && e.kind === "tls",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("a refused connection is a network failure; a silent server a timeout", async () => {
  // A listener that accepts but never answers.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    await assert.rejects(
      httpsRequest(
        { address: "127.0.0.1", port, tlsName: "localhost", hostHeader: "x" },
        { ...base, timeoutMs: 200, method: "GET", path: "/" },
      ),
      (e) => e instanceof HttpsFailure && e.kind === "timeout",
    );
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of accepted) conn.close();
  }
  await assert.rejects(
    httpsRequest(
      { address: "127.0.0.1", port, tlsName: "localhost", hostHeader: "x" },
      { ...base, method: "GET", path: "/" },
    ),
    (e) => e instanceof HttpsFailure && e.kind === "network",
  );
  await assert.rejects(
    httpsRequest(
      { address: "127.0.0.1", port, tlsName: "localhost", hostHeader: "x\r\nEvil: 1" },
      { ...base, method: "GET", path: "/" },
    ),
    (e) => e instanceof HttpsFailure && e.kind === "network",
  );
});

Deno.test("a connect that never completes is cut at the deadline", async () => {
  // An address that drops SYNs leaves Deno.connect pending for minutes: stand in for one.
  const realConnect = Deno.connect;
  let signalled = false;
  Object.defineProperty(Deno, "connect", {
    configurable: true,
    writable: true,
    value: (options: { signal?: AbortSignal }) =>
      new Promise((_, reject) => {
        options.signal?.addEventListener("abort", () => {
          signalled = true;
          reject(new DOMException("aborted", "AbortError"));
        });
      }),
  });
  try {
    await assert.rejects(
      httpsRequest(
        { address: "192.0.2.1", port: 8448, tlsName: "x.example", hostHeader: "x.example" },
        { ...base, timeoutMs: 50, method: "GET", path: "/" },
      ),
      (e) => e instanceof HttpsFailure && e.kind === "timeout",
    );
    assert.equal(signalled, true);
  } finally {
    Object.defineProperty(Deno, "connect", {
      configurable: true,
      writable: true,
      value: realConnect,
    });
  }
});

/** A raw TLS server running `reply` on each connection, then closing it. */
function rawServer(reply: (conn: Deno.Conn) => Promise<void>) {
  return rawTlsServer(leaf, reply);
}

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("a close-delimited body, endless headers or a lying Content-Length are bounded", async () => {
  const server = rawServer(async (conn) => {
    // Read the request head first, so the client is not cut off mid-write.
    await conn.read(new Uint8Array(64 * 1024));
    await conn.write(encode("HTTP/1.1 200 OK\r\n"));
    const kind = conns.shift();
    if (kind === "close-delimited") {
      await conn.write(encode("\r\n"));
      for (let i = 0; i < 20; i++) await conn.write(new Uint8Array(1024).fill(0x78));
    } else if (kind === "headers") {
      for (let i = 0; i < 200; i++) await conn.write(encode(`X-Pad-${i}: ${"y".repeat(1000)}\r\n`));
    } else {
      await conn.write(encode("Content-Length: 100\r\n\r\nshort"));
    }
  });
  const conns: string[] = [];
  try {
    conns.push("close-delimited");
    await assert.rejects(
      httpsRequest(server.target, { ...base, maxResponseBytes: 4096, method: "GET", path: "/" }),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
    conns.push("headers");
    await assert.rejects(
      httpsRequest(server.target, { ...base, method: "GET", path: "/" }),
      (e) => e instanceof HttpsFailure && e.kind === "too_large",
    );
    conns.push("short");
    await assert.rejects(
      httpsRequest(server.target, { ...base, method: "GET", path: "/" }),
      (e) => e instanceof HttpsFailure && e.kind === "network",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("a server dripping its answer forever is cut at the deadline", async () => {
  let stop = false;
  const server = rawServer(async (conn) => {
    await conn.read(new Uint8Array(64 * 1024));
    await conn.write(encode("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"));
    while (!stop) {
      await conn.write(encode("x"));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
  try {
    await assert.rejects(
      httpsRequest(server.target, { ...base, timeoutMs: 300, method: "GET", path: "/" }),
      (e) => e instanceof HttpsFailure && e.kind === "timeout",
    );
  } finally {
    stop = true;
    await server.stop();
  }
});

Deno.test("a connection is kept for the next GET or PUT to the same server; POST opens its own", async () => {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    (_req, info) => Response.json({ port: info.remoteAddr.port }),
  );
  const target: HttpsTarget = {
    address: "127.0.0.1",
    port: server.addr.port,
    tlsName: "localhost",
    hostHeader: "localhost",
  };
  const clientPort = async (method: string) => {
    const res = await httpsRequest(target, { ...base, method, path: "/" });
    assert.equal(res.status, 200);
    return JSON.parse(new TextDecoder().decode(res.body)).port;
  };
  try {
    const first = await clientPort("GET");
    assert.equal(await clientPort("PUT"), first);
    assert.equal(await clientPort("GET"), first);
    assert.notEqual(await clientPort("POST"), first);
  } finally {
    closeIdleHttpsConnections();
    await server.shutdown();
  }
});

Deno.test("a kept connection the server closed meanwhile is replaced, the request answered", async () => {
  let accepted = 0;
  // Answers one request per connection, framed and without `Connection: close`, then closes.
  const server = rawServer(async (conn) => {
    accepted++;
    await conn.read(new Uint8Array(64 * 1024));
    await conn.write(encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
  });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await httpsRequest(server.target, { ...base, method: "PUT", path: "/" });
      assert.equal(res.status, 200);
      assert.equal(new TextDecoder().decode(res.body), "{}");
    }
    assert.equal(accepted, 3);
  } finally {
    closeIdleHttpsConnections();
    await server.stop();
  }
});
