/** X-Matrix request authentication of inbound federation requests (serverAuth middleware). */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { MatrixError } from "../../../domain/errors.ts";
import {
  formatXMatrix,
  parseXMatrix,
  signRequest,
} from "../../../domain/federation/request_auth.ts";
import type { KeyRing } from "../../../domain/federation/key_ring.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../../domain/protocol/signing.ts";
import type { JsonValue } from "../../../domain/protocol/json.ts";
import {
  MAX_FEDERATION_BODY_BYTES,
  originOf,
  serverAuth,
  type ServerAuthDeps,
  signedContent,
} from "../../../routes/federation/server_auth.ts";

const US = "us.example";
const remoteKey = await signingKeyFromSeed(generateSigningSeed(), "ed25519:r1");
const forgerKey = await signingKeyFromSeed(generateSigningSeed(), "ed25519:r1");

/** A key ring knowing one key of remote.example, valid until `validUntil`. */
function fakeKeyRing(validUntil = Infinity): KeyRing & { asked: [string, string, number][] } {
  const asked: [string, string, number][] = [];
  return {
    asked,
    verifyKey(server, keyId, atTs) {
      asked.push([server, keyId, atTs]);
      if (server === "broken.example") return Promise.reject(new Error("unreachable"));
      const known = server === "remote.example" && keyId === remoteKey.keyId && atTs <= validUntil;
      return Promise.resolve(known ? remoteKey.publicKey : undefined);
    },
  };
}

function appWith(deps: ServerAuthDeps): Hono {
  const app = new Hono();
  app.use("/_matrix/federation/*", serverAuth(deps));
  // Mounted twice (parent and route), as a sub-app may do: verified once.
  app.put("/_matrix/federation/v1/send/:txn", serverAuth(deps), async (c) => {
    // The route can still read the body itself after the middleware did.
    const again = await c.req.json();
    return c.json({ origin: originOf(c), content: signedContent(c) ?? null, again });
  });
  app.get(
    "/_matrix/federation/v1/thing",
    (c) => c.json({ origin: originOf(c), content: signedContent(c) ?? null }),
  );
  app.onError((e, c) =>
    e instanceof MatrixError
      ? c.json(e.toJSON(), e.status as 401)
      : c.json({ errcode: "M_UNKNOWN" }, 500)
  );
  return app;
}

async function send(
  app: Hono,
  { method = "GET", path = "/_matrix/federation/v1/thing", body, authorization }: {
    method?: string;
    path?: string;
    body?: JsonValue | string;
    authorization?: string;
  },
) {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await app.request(path, {
    method,
    headers,
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await res.json() };
}

const signed = (
  fields: { method: string; uri: string; content?: JsonValue; destination?: string },
  key = remoteKey,
) => signRequest({ origin: "remote.example", destination: US, ...fields }, key);

Deno.test("a correctly signed GET and PUT pass; the route sees the origin and the body", async () => {
  const origins: string[] = [];
  const keyRing = fakeKeyRing();
  const app = appWith({
    config: { serverName: US },
    keyRing,
    now: () => 1234,
    onInboundServerRequest: (o) => void origins.push(o),
  });
  const get = await send(app, {
    authorization: await signed({ method: "GET", uri: "/_matrix/federation/v1/thing" }),
  });
  assert.equal(get.status, 200);
  assert.deepEqual(get.body, { origin: "remote.example", content: null });
  assert.deepEqual(keyRing.asked, [["remote.example", "ed25519:r1", 1234]]);

  const content = { pdus: [], edus: [], origin: "remote.example" };
  const uri = "/_matrix/federation/v1/send/t%201?a=b";
  const put = await send(app, {
    method: "PUT",
    path: uri,
    body: content,
    authorization: await signed({ method: "PUT", uri, content }),
  });
  assert.equal(put.status, 200);
  assert.deepEqual(put.body, { origin: "remote.example", content, again: content });
  // Verified once per request although the middleware ran at two levels.
  assert.deepEqual(origins, ["remote.example", "remote.example"]);
  assert.equal(keyRing.asked.length, 2);
});

Deno.test("missing, forged, misaddressed or unknown-key requests get 401, malformed ones 400 (M_UNAUTHORIZED)", async () => {
  const origins: string[] = [];
  const app = appWith({
    config: { serverName: US },
    keyRing: fakeKeyRing(),
    onInboundServerRequest: (o) => void origins.push(o),
  });
  const uri = "/_matrix/federation/v1/thing";
  const content = { a: 1 };
  const good = parseXMatrix(await signed({ method: "GET", uri }))!;
  const cases: [string, Parameters<typeof send>[1]][] = [
    ["no header", {}],
    ["another scheme", { authorization: "Bearer abc" }],
    ["forged with another key", { authorization: await signed({ method: "GET", uri }, forgerKey) }],
    ["signed for another path", {
      authorization: await signed({ method: "GET", uri: "/_matrix/federation/v1/other" }),
    }],
    ["signed for another method", { authorization: await signed({ method: "POST", uri }) }],
    ["addressed to another server", {
      authorization: await signed({ method: "GET", uri, destination: "them.example" }),
    }],
    ["signed for another destination without saying so", {
      authorization: formatXMatrix({
        origin: "remote.example",
        key: good.key,
        sig: parseXMatrix(await signed({ method: "GET", uri, destination: "them.example" }))!.sig,
      }),
    }],
    ["unknown key", { authorization: formatXMatrix({ ...good, key: "ed25519:other" }) }],
    ["key lookup fails", { authorization: formatXMatrix({ ...good, origin: "broken.example" }) }],
    ["claims another origin", {
      authorization: formatXMatrix({ ...good, origin: "evil.example" }),
    }],
    ["body changed", {
      method: "PUT",
      path: "/_matrix/federation/v1/send/1",
      body: { a: 2 },
      authorization: await signed({ method: "PUT", uri: "/_matrix/federation/v1/send/1", content }),
    }],
    ["body dropped", {
      method: "PUT",
      path: "/_matrix/federation/v1/send/1",
      authorization: await signed({ method: "PUT", uri: "/_matrix/federation/v1/send/1", content }),
    }],
  ];
  for (const [name, request] of cases) {
    const res = await send(app, request);
    assert.equal(res.status, 401, name);
    assert.equal(res.body.errcode, "M_UNAUTHORIZED", name);
  }
  // A malformed header, or an invalid origin (SyTest's "localhost:http"), is a bad request:
  // 400 with M_UNAUTHORIZED, as Synapse answers.
  const malformed: [string, string][] = [
    ["lacks key and sig", 'X-Matrix origin="remote.example"'],
    ["invalid origin", formatXMatrix({ ...good, origin: "bad origin!" })],
    ["non-numeric port", formatXMatrix({ ...good, origin: "localhost:http" })],
    ["unterminated quote", 'X-Matrix origin="remote.example,key="ed25519:r1",sig="x"'],
  ];
  for (const [name, authorization] of malformed) {
    const res = await send(app, { authorization });
    assert.equal(res.status, 400, name);
    assert.equal(res.body.errcode, "M_UNAUTHORIZED", name);
  }
  assert.deepEqual(origins, []);
});

Deno.test("an expired key does not verify: the key ring is asked at the request's time", async () => {
  let now = 1000;
  const app = appWith({ config: { serverName: US }, keyRing: fakeKeyRing(2000), now: () => now });
  const authorization = await signed({ method: "GET", uri: "/_matrix/federation/v1/thing" });
  assert.equal((await send(app, { authorization })).status, 200);
  now = 3000;
  assert.equal((await send(app, { authorization })).status, 401);
});

Deno.test("a request without destination (servers before v1.3) is checked as addressed to us", async () => {
  const app = appWith({ config: { serverName: US }, keyRing: fakeKeyRing() });
  const auth = parseXMatrix(await signed({ method: "GET", uri: "/_matrix/federation/v1/thing" }))!;
  const { destination: _d, ...noDestination } = auth;
  assert.equal((await send(app, { authorization: formatXMatrix(noDestination) })).status, 200);
});

Deno.test("bad bodies: not JSON is 400 M_NOT_JSON, too large is 413, and a failing hook does not fail the request", async () => {
  const app = appWith({
    config: { serverName: US },
    keyRing: fakeKeyRing(),
    onInboundServerRequest: () => Promise.reject(new Error("hook broke")),
  });
  const uri = "/_matrix/federation/v1/send/1";
  const notJson = await send(app, {
    method: "PUT",
    path: uri,
    body: "{nope",
    authorization: await signed({ method: "PUT", uri }),
  });
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.errcode, "M_NOT_JSON");
  const huge = { blob: "x".repeat(MAX_FEDERATION_BODY_BYTES) };
  const tooLarge = await send(app, {
    method: "PUT",
    path: uri,
    body: huge,
    authorization: await signed({ method: "PUT", uri }),
  });
  assert.equal(tooLarge.status, 413);
  const content = { ok: true };
  const fine = await send(app, {
    method: "PUT",
    path: uri,
    body: content,
    authorization: await signed({ method: "PUT", uri, content }),
  });
  assert.equal(fine.status, 200);
});
