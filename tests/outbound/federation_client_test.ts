/** The federation client: discovery with a KV-cached well-known, the guard, signing, failures. */
import assert from "node:assert/strict";
import { FederationClient, federationClientFromConfig } from "../../outbound/federation_client.ts";
import {
  HttpsFailure,
  type HttpsRequest,
  type HttpsResponse,
  type HttpsTarget,
} from "../../outbound/federation_https.ts";
import { KvWellKnownCache } from "../../kv/well_known_cache.ts";
import { FederationUnreachable } from "../../domain/ports/federation_transport.ts";
import { parseXMatrix, verifyRequestSignature } from "../../domain/federation/request_auth.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../domain/protocol/signing.ts";
import { loadConfig } from "../../domain/config.ts";
import { keyringFromSeed } from "../../domain/protocol/server_keys.ts";
import type { SrvRecord } from "../../domain/federation/server_discovery.ts";

const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:a");
const PUBLIC = "93.184.216.34";

type Handler = (
  target: HttpsTarget,
  request: HttpsRequest,
) => HttpsResponse | Promise<HttpsResponse>;

function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpsResponse {
  return {
    status,
    headers: new Headers(headers),
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

async function setup(handler: Handler, options: {
  allowPrivate?: boolean;
  addresses?: Record<string, string[]>;
  srv?: Record<string, SrvRecord[]>;
} = {}) {
  const kv = await Deno.openKv(":memory:");
  let now = Date.parse("2026-01-01T00:00:00Z");
  const calls: { target: HttpsTarget; request: HttpsRequest }[] = [];
  const srvAsked: string[] = [];
  const client = new FederationClient({
    serverName: "us.example",
    signingKey: key,
    allowPrivate: options.allowPrivate ?? false,
    wellKnownCache: new KvWellKnownCache(kv),
    now: () => now,
    resolve: (host) => Promise.resolve(options.addresses?.[host] ?? [PUBLIC]),
    resolveSrv: (name) => {
      srvAsked.push(name);
      return Promise.resolve(options.srv?.[name] ?? []);
    },
    exchange: (target, request) => {
      calls.push({ target, request });
      return Promise.resolve(handler(target, request));
    },
  });
  return {
    client,
    calls,
    srvAsked,
    kv,
    advance: (ms: number) => void (now += ms),
    [Symbol.asyncDispose]: () => Promise.resolve(kv.close()),
  };
}

Deno.test("a signed request to a name delegated by well-known; the answer is cached in KV", async () => {
  await using t = await setup((target, request) => {
    if (request.path === "/.well-known/matrix/server") {
      return json(200, { "m.server": "matrix.example.org:8443" }, {
        "cache-control": "max-age=3600",
      });
    }
    return json(200, { ok: target.hostHeader });
  });
  const body = { pdus: [] };
  const res = await t.client.request({
    method: "PUT",
    destination: "example.org",
    path: "/_matrix/federation/v1/send/1",
    body,
  });
  assert.deepEqual(res, { status: 200, body: { ok: "matrix.example.org:8443" } });
  assert.deepEqual(t.calls.map((c) => c.target), [
    { address: PUBLIC, port: 443, tlsName: "example.org", hostHeader: "example.org" },
    {
      address: PUBLIC,
      port: 8443,
      tlsName: "matrix.example.org",
      hostHeader: "matrix.example.org:8443",
    },
  ]);
  const sent = t.calls[1].request;
  assert.equal(new TextDecoder().decode(sent.body), JSON.stringify(body));
  assert.equal(sent.headers!["Content-Type"], "application/json");
  const auth = parseXMatrix(sent.headers!.Authorization)!;
  assert.equal(auth.origin, "us.example");
  assert.equal(auth.destination, "example.org");
  assert.ok(
    await verifyRequestSignature(auth, {
      method: "PUT",
      uri: "/_matrix/federation/v1/send/1",
      destination: "example.org",
      content: body,
    }, key.publicKey),
  );

  // Cached: no second well-known fetch within the hour, one after it.
  await t.client.request({ method: "GET", destination: "example.org", path: "/x", signed: false });
  assert.equal(t.calls.length, 3);
  assert.equal(t.calls[2].request.headers!.Authorization, undefined);
  t.advance(3601_000);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  assert.deepEqual(t.calls.slice(3).map((c) => c.request.path), [
    "/.well-known/matrix/server",
    "/x",
  ]);
});

Deno.test("no well-known (error or invalid): cached for an hour, SRV then port 8448", async () => {
  await using t = await setup((target, request) => {
    if (request.path === "/.well-known/matrix/server") {
      if (target.tlsName === "down.example") throw new HttpsFailure("network", "refused");
      return json(200, { "m.server": 12 });
    }
    return json(200, {});
  }, {
    srv: {
      "_matrix-fed._tcp.down.example": [{
        target: "fed.host.example.",
        port: 8000,
        priority: 1,
        weight: 1,
      }],
    },
  });
  await t.client.request({ method: "GET", destination: "down.example", path: "/a" });
  await t.client.request({ method: "GET", destination: "invalid.example", path: "/b" });
  assert.deepEqual(
    t.calls.filter((c) => c.request.path !== "/.well-known/matrix/server").map((c) => c.target),
    [
      { address: PUBLIC, port: 8000, tlsName: "down.example", hostHeader: "down.example" },
      { address: PUBLIC, port: 8448, tlsName: "invalid.example", hostHeader: "invalid.example" },
    ],
  );
  const wellKnownFetches = () =>
    t.calls.filter((c) => c.request.path === "/.well-known/matrix/server").length;
  assert.equal(wellKnownFetches(), 2);
  t.advance(59 * 60_000);
  await t.client.request({ method: "GET", destination: "down.example", path: "/a" });
  assert.equal(wellKnownFetches(), 2);
  t.advance(2 * 60_000);
  await t.client.request({ method: "GET", destination: "down.example", path: "/a" });
  assert.equal(wellKnownFetches(), 3);
});

Deno.test("well-known redirects are followed over HTTPS only", async () => {
  await using t = await setup((target, request) => {
    if (target.tlsName === "example.org") {
      return {
        status: 301,
        headers: new Headers({ location: "https://www.example.org/mx" }),
        body: new Uint8Array(),
      };
    }
    if (request.path === "/mx") return json(200, { "m.server": "delegated.example:1234" });
    return json(200, {});
  });
  await t.client.request({ method: "GET", destination: "example.org", path: "/z" });
  assert.deepEqual(t.calls.map((c) => [c.target.tlsName, c.target.port, c.request.path]), [
    ["example.org", 443, "/.well-known/matrix/server"],
    ["www.example.org", 443, "/mx"],
    ["delegated.example", 1234, "/z"],
  ]);
});

Deno.test("private and loopback destinations are refused unless allowed", async () => {
  await using t = await setup(() => json(200, {}), {
    addresses: { "internal.example": ["10.1.2.3"] },
  });
  for (
    const destination of [
      "127.0.0.1:8448",
      "[::1]:8448",
      "localhost:8448",
      "internal.example:8448",
      "192.168.1.1",
    ]
  ) {
    await assert.rejects(
      t.client.request({ method: "GET", destination, path: "/" }),
      (e) =>
        e instanceof FederationUnreachable && e.failure === "refused" &&
        e.destination === destination,
      destination,
    );
  }
  assert.equal(t.calls.length, 0);
  await using allowed = await setup(() => json(200, {}), { allowPrivate: true });
  assert.equal(
    (await allowed.client.request({ method: "GET", destination: "127.0.0.1:8448", path: "/" }))
      .status,
    200,
  );
  assert.deepEqual(allowed.calls[0].target, {
    address: "127.0.0.1",
    port: 8448,
    tlsName: "127.0.0.1",
    hostHeader: "127.0.0.1:8448",
  });
});

Deno.test("failures: bad names refused, unresolvable names, next address on a connection failure, timeouts", async () => {
  await using t = await setup((target) => {
    if (target.address === "93.184.216.1") throw new HttpsFailure("network", "connection refused");
    if (target.address === "93.184.216.9") throw new HttpsFailure("timeout", "slow");
    return { status: 200, headers: new Headers(), body: new TextEncoder().encode("not json") };
  }, {
    addresses: {
      "two.example": ["93.184.216.1", "93.184.216.2"],
      "slow.example": ["93.184.216.9"],
      "gone.example": [],
    },
  });
  await assert.rejects(
    t.client.request({ method: "GET", destination: "bad name", path: "/" }),
    (e) => e instanceof FederationUnreachable && e.failure === "refused",
  );
  await assert.rejects(
    t.client.request({ method: "GET", destination: "gone.example:8448", path: "/" }),
    (e) => e instanceof FederationUnreachable && e.failure === "unresolved",
  );
  // The first address refuses the connection; the second answers (with a non-JSON body).
  assert.deepEqual(
    await t.client.request({ method: "GET", destination: "two.example:8448", path: "/" }),
    {
      status: 200,
      body: null,
    },
  );
  await assert.rejects(
    t.client.request({ method: "GET", destination: "slow.example:8448", path: "/" }),
    (e) => e instanceof FederationUnreachable && e.failure === "timeout",
  );
});

Deno.test("TESSERA_FEDERATION=off refuses every request; a missing CA file stops start-up", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const keyring = await keyringFromSeed("us.example", generateSigningSeed());
    const off = federationClientFromConfig(
      loadConfig({ TESSERA_FEDERATION: "off" }, { dev: true }),
      keyring,
      new KvWellKnownCache(kv),
    );
    await assert.rejects(
      off.request({ method: "GET", destination: "example.org", path: "/" }),
      (e) => e instanceof FederationUnreachable && e.failure === "refused",
    );
    assert.throws(
      () =>
        federationClientFromConfig(
          loadConfig({ TESSERA_FEDERATION_CA_FILE: "/nonexistent/ca.pem" }, { dev: true }),
          keyring,
          new KvWellKnownCache(kv),
        ),
      /TESSERA_FEDERATION_CA_FILE: cannot read/,
    );
  } finally {
    kv.close();
  }
});

Deno.test("a well-known server down right after a valid answer: its delegation holds, retried every 2 minutes, for 2 hours", async () => {
  let down = false;
  await using t = await setup((_target, request) => {
    if (request.path === "/.well-known/matrix/server") {
      if (down) return json(503, {});
      return json(200, { "m.server": "m.example.org:8443" }, { "cache-control": "max-age=600" });
    }
    return json(200, {});
  });
  const ports = () => t.calls.filter((c) => c.request.path === "/x").map((c) => c.target.port);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  down = true;
  t.advance(601_000);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  const wellKnownFetches = () =>
    t.calls.filter((c) => c.request.path === "/.well-known/matrix/server").length;
  assert.equal(wellKnownFetches(), 2);
  // Within the 2 minutes: not asked again.
  t.advance(60_000);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  assert.equal(wellKnownFetches(), 2);
  // Asked again after them, still down: the delegation holds.
  t.advance(61_000);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  assert.equal(wellKnownFetches(), 3);
  // Two hours after the valid answer expired, still down: no delegation, port 8448 of the name.
  t.advance(2 * 3600_000);
  await t.client.request({ method: "GET", destination: "example.org", path: "/x" });
  assert.deepEqual(ports(), [8443, 8443, 8443, 8443, 8448]);
});

/** Asserts `destination` is refused as `refused` (or `unresolved`) without any exchange. */
async function assertRefused(
  t: Awaited<ReturnType<typeof setup>>,
  destination: string,
  failures: string[] = ["refused"],
) {
  await assert.rejects(
    t.client.request({ method: "GET", destination, path: "/x" }),
    (e) =>
      e instanceof FederationUnreachable && failures.includes(e.failure) &&
      e.destination === destination,
    destination,
  );
}

Deno.test("IPv6 loopback, link-local, unique-local and IPv4-mapped destinations, and names resolving to them, are refused", async () => {
  await using t = await setup(() => json(200, {}), {
    addresses: {
      "v6loop.example": ["::1"],
      "v6link.example": ["fe80::1"],
      "v6ula.example": ["fd00::5"],
      "mapped.example": ["::ffff:192.168.0.1"],
      "nat64.example": ["64:ff9b::7f00:1"],
      // One private address among public ones is enough: a client may connect to any.
      "mixed.example": [PUBLIC, "10.0.0.1"],
      "mixed6.example": ["2606:4700:4700::1111", "::ffff:127.0.0.1"],
    },
  });
  for (
    const destination of [
      "[::1]:8448",
      "[0:0:0:0:0:0:0:1]:8448",
      "[fe80::1]:8448",
      "[fd00::1]:8448",
      "[::]:8448",
      "[::ffff:127.0.0.1]:8448",
      "[::ffff:7f00:1]:8448",
      "[::ffff:10.0.0.1]:8448",
      "[::127.0.0.1]:8448",
      "[2002:7f00:1::]:8448",
      "169.254.169.254:8448",
      "0.0.0.0:8448",
      "100.64.0.1:8448",
      "sub.localhost:8448",
      "v6loop.example:8448",
      "v6link.example:8448",
      "v6ula.example:8448",
      "mapped.example:8448",
      "nat64.example:8448",
      "mixed.example:8448",
      "mixed6.example:8448",
    ]
  ) {
    await assertRefused(t, destination);
  }
  assert.deepEqual(t.calls, []);
});

Deno.test("well-known delegation and SRV targets pointing at private addresses are refused", async () => {
  const delegations: Record<string, string> = {
    "to-ip.example": "127.0.0.1:8448",
    "to-v6.example": "[::1]:8448",
    "to-name.example": "internal.example:8448",
    "to-portless.example": "internal.example",
  };
  await using t = await setup((target, request) => {
    if (request.path === "/.well-known/matrix/server") {
      const to = delegations[target.tlsName];
      return to === undefined ? json(404, {}) : json(200, { "m.server": to });
    }
    return json(200, {});
  }, {
    addresses: {
      "internal.example": ["10.1.2.3"],
      "v6internal.example": ["fe80::2"],
      // The well-known host itself is private: not even its well-known is fetched.
      "intranet.example": ["192.168.0.5"],
    },
    srv: {
      "_matrix-fed._tcp.srv.example": [{
        target: "internal.example.",
        port: 8448,
        priority: 1,
        weight: 1,
      }],
      "_matrix._tcp.legacy-srv.example": [{
        target: "v6internal.example.",
        port: 8448,
        priority: 1,
        weight: 1,
      }],
      // The portless delegation's SRV leads to a private target too.
      "_matrix-fed._tcp.internal.example": [{
        target: "internal.example.",
        port: 8000,
        priority: 1,
        weight: 1,
      }],
    },
  });
  for (const destination of Object.keys(delegations)) await assertRefused(t, destination);
  await assertRefused(t, "srv.example");
  await assertRefused(t, "legacy-srv.example");
  await assertRefused(t, "intranet.example");
  // Only public hosts' well-known documents were fetched; nothing else was sent.
  assert.deepEqual(
    t.calls.map((c) => [c.target.address, c.target.tlsName, c.request.path]),
    [
      ...Object.keys(delegations).map((d) => [PUBLIC, d, "/.well-known/matrix/server"]),
      [PUBLIC, "srv.example", "/.well-known/matrix/server"],
      [PUBLIC, "legacy-srv.example", "/.well-known/matrix/server"],
    ],
  );
});

Deno.test("well-known redirects to private hosts, to plain HTTP or in a loop lead nowhere; federation answers are never redirected", async () => {
  const redirects: Record<string, string> = {
    "to-loopback.example": "https://127.0.0.1/.well-known/matrix/server",
    "to-private-name.example": "https://internal.example/.well-known/matrix/server",
    "to-http.example": "http://public.example/.well-known/matrix/server",
    "loop.example": "https://loop.example/.well-known/matrix/server",
  };
  await using t = await setup((target, request) => {
    if (request.path === "/.well-known/matrix/server") {
      const location = redirects[target.tlsName];
      if (location !== undefined) {
        return { status: 302, headers: new Headers({ location }), body: new Uint8Array() };
      }
      // What a followed redirect would have delegated to.
      return json(200, { "m.server": "delegated.example:1234" });
    }
    return {
      status: 307,
      headers: new Headers({ location: "https://127.0.0.1/steal" }),
      body: new Uint8Array(),
    };
  }, { addresses: { "internal.example": ["10.1.2.3"] } });
  for (const destination of Object.keys(redirects)) {
    const answer = await t.client.request({ method: "GET", destination, path: "/x" });
    // No delegation: the request goes to the name itself, whose 307 comes back as it is.
    assert.equal(answer.status, 307, destination);
  }
  const contacted = t.calls.map((c) => `${c.target.address} ${c.target.tlsName}${c.request.path}`);
  assert.deepEqual(contacted.filter((c) => !c.startsWith(`${PUBLIC} `)), []);
  assert.equal(
    contacted.some((c) => c.includes("delegated.example") || c.includes("/steal")),
    false,
  );
  // The loop was followed at most 6 times (the first request and 5 redirects), then dropped.
  assert.ok(contacted.filter((c) => c.includes("loop.example/.well-known")).length <= 6);
});

Deno.test("responses are bounded: 64 MiB and the 30 s deadline for requests, 50 KiB for well-known; an oversize answer is not retried elsewhere", async () => {
  await using t = await setup((target, request) => {
    if (request.path === "/.well-known/matrix/server") return json(404, {});
    if (target.address === "93.184.216.1") throw new HttpsFailure("too_large", "body too big");
    return json(200, {});
  }, { addresses: { "big.example": ["93.184.216.1", "93.184.216.2"] } });
  await t.client.request({ method: "GET", destination: "public.example", path: "/x" });
  const [wellKnown, request] = t.calls;
  assert.equal(wellKnown.request.maxResponseBytes, 50 * 1024);
  assert.ok(wellKnown.request.timeoutMs <= 10_000);
  assert.equal(request.request.maxResponseBytes, 64 * 1024 * 1024);
  assert.ok(request.request.timeoutMs > 0 && request.request.timeoutMs <= 30_000);
  await assert.rejects(
    t.client.request({ method: "GET", destination: "big.example:8448", path: "/x" }),
    (e) => e instanceof FederationUnreachable && e.failure === "too_large",
  );
  assert.equal(t.calls.some((c) => c.target.address === "93.184.216.2"), false);
  // A request may set a smaller bound of its own (key answers, device lists).
  await t.client.request({
    method: "GET",
    destination: "public.example",
    path: "/y",
    maxResponseBytes: 4096,
  });
  assert.equal(t.calls.at(-1)!.request.maxResponseBytes, 4096);
});
