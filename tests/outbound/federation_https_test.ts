/** The federation HTTPS exchange against a real TLS server with a throwaway CA. */
import assert from "node:assert/strict";
import { createTestCa } from "../federation/test_certificates.ts";
import { HttpsFailure, httpsRequest, type HttpsTarget } from "../../outbound/federation_https.ts";

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
