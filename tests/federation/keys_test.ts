/**
 * Server keys between in-process servers: our key document with retired keys, the key ring's
 * fetch, cache (shared through KV), expiry, refusal of forged documents and backoff, the
 * notary endpoints, and the notary fallback.
 */
import assert from "node:assert/strict";
import { type Network, startNetwork } from "./in_process_network.ts";
import { encodeBase64Unpadded } from "../../domain/protocol/base64.ts";
import { signEvent } from "../../domain/protocol/event_signing.ts";
import { verifyEventSignatures } from "../../domain/federation/event_signatures.ts";
import { FederationKeyRing } from "../../domain/federation/key_ring.ts";
import { KeyNotary } from "../../domain/federation/key_notary.ts";
import { addContentHash } from "../../domain/protocol/hashing.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type {
  FederationResponse,
  FederationTransport,
} from "../../domain/ports/federation_transport.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { keyIdForPublicKey, keyringFromSeed } from "../../domain/protocol/server_keys.ts";
import {
  type SigningKey,
  signingKeyFromSeed,
  signJson,
  verifyJsonSignature,
} from "../../domain/protocol/signing.ts";
import { KvServerKeyStore } from "../../kv/server_key_store.ts";
import { decodeBase64 } from "../../domain/protocol/base64.ts";

const DAY = 24 * 60 * 60 * 1000;
const seed = (byte: number) => new Uint8Array(32).fill(byte);
const seedText = (byte: number) => encodeBase64Unpadded(seed(byte));

/** A clock the test moves by hand, shared by every server of a network. */
function manualClock(start = 1_800_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** A key document for a fake server, signed by `signer` (its own key unless a test forges). */
async function keyDocument(
  serverName: string,
  key: SigningKey,
  validUntilTs: number,
  extra: JsonObject = {},
  signer: SigningKey = key,
): Promise<JsonObject> {
  return await signJson(
    {
      server_name: serverName,
      valid_until_ts: validUntilTs,
      verify_keys: { [key.keyId]: { key: encodeBase64Unpadded(key.publicKey) } },
      old_verify_keys: {},
      ...extra,
    },
    serverName,
    signer,
  );
}

/**
 * Answer requests to some servers of the network from `documents` instead of delivering them:
 * those servers then publish whatever key documents the test makes.
 */
function serveFakeServers(
  net: Network,
  documents: Map<string, () => FederationResponse | Promise<FederationResponse>>,
) {
  net.intercept((request) => {
    const answer = documents.get(request.destination);
    return answer === undefined ? "deliver" : answer();
  });
}

function keyRequests(net: Network, destination: string, origin?: string) {
  return net.log.filter((r) =>
    r.destination === destination && r.path === "/_matrix/key/v2/server" &&
    (origin === undefined || r.origin === origin)
  );
}

Deno.test("key document: current key, retired keys with expired_ts, self-signed", async () => {
  const oldKey = await signingKeyFromSeed(seed(7), "ed25519:old1");
  const expiredTs = 1_700_000_000_000;
  const net = await startNetwork(["a.test"], {
    env: {
      TESSERA_SIGNING_KEY: seedText(1),
      TESSERA_OLD_SIGNING_KEYS: JSON.stringify({
        "ed25519:old1": { key: encodeBase64Unpadded(oldKey.publicKey), expired_ts: expiredTs },
      }),
    },
  });
  try {
    const a = net.servers["a.test"];
    const current = a.deps.keyring.current;
    assert.equal(current.keyId, keyIdForPublicKey(current.publicKey));
    for (const path of ["/_matrix/key/v2/server", `/_matrix/key/v2/server/${current.keyId}`]) {
      const res = await a.request("GET", path);
      assert.equal(res.status, 200);
      const doc = res.body as JsonObject;
      assert.equal(doc.server_name, "a.test");
      assert.deepEqual(doc.verify_keys, {
        [current.keyId]: { key: encodeBase64Unpadded(current.publicKey) },
      });
      assert.deepEqual(doc.old_verify_keys, {
        "ed25519:old1": { key: encodeBase64Unpadded(oldKey.publicKey), expired_ts: expiredTs },
      });
      assert.ok(await verifyJsonSignature(doc, "a.test", current.keyId, current.publicKey));
    }
    // Our own key ring answers locally: the retired key up to its expiry, the current always.
    const ring = a.deps.keyRing;
    assert.deepEqual(
      await ring.verifyKey("a.test", "ed25519:old1", expiredTs - 1),
      oldKey.publicKey,
    );
    assert.equal(await ring.verifyKey("a.test", "ed25519:old1", expiredTs + 1), undefined);
    assert.deepEqual(await ring.verifyKey("a.test", "ed25519:old1", 0), oldKey.publicKey);
    assert.deepEqual(await ring.verifyKey("a.test", current.keyId, Date.now()), current.publicKey);
    assert.equal(await ring.verifyKey("a.test", "ed25519:other", 0), undefined);
    assert.equal(net.log.length, 0, "our own keys are never fetched");

    // One of our own events signed with the retired key still verifies if made before expiry.
    const v10 = roomVersion("10")!;
    const event = async (ts: number) =>
      await signEvent(
        addContentHash({
          room_id: "!r:a.test",
          sender: "@alice:a.test",
          origin_server_ts: ts,
          type: "m.room.message",
          content: { body: "before the rotation" },
          prev_events: [],
          auth_events: [],
          depth: 3,
        }, v10),
        v10,
        "a.test",
        oldKey,
      );
    assert.deepEqual(await verifyEventSignatures(await event(expiredTs - DAY), v10, ring), {
      ok: true,
    });
    assert.equal((await verifyEventSignatures(await event(expiredTs + 1), v10, ring)).ok, false);
  } finally {
    await net.close();
  }
});

Deno.test("key rotation settings are checked at start-up", async () => {
  const current = await keyringFromSeed("a.test", seed(1));
  await assert.rejects(
    keyringFromSeed("a.test", seed(1), [{
      keyId: "ed25519:x",
      publicKey: current.current.publicKey,
      expiredTs: 1,
    }]),
    /is the current signing key/,
  );
  await assert.rejects(
    startNetwork(["a.test"], { env: { TESSERA_OLD_SIGNING_KEYS: '{"ed25519:x": {}}' } }),
    /TESSERA_OLD_SIGNING_KEYS/,
  );
});

Deno.test("key ring: fetched once, cached in KV for every key ring, refetched after expiry", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "b.test"], { now: clock.now });
  try {
    const a = net.servers["a.test"];
    const b = net.servers["b.test"].deps.keyring.current;
    // Several concurrent misses share one fetch.
    const keys = await Promise.all(
      Array.from({ length: 5 }, () => a.deps.keyRing.verifyKey("b.test", b.keyId, clock.now())),
    );
    for (const key of keys) assert.deepEqual(key, b.publicKey);
    assert.equal(keyRequests(net, "b.test").length, 1);
    assert.equal(keyRequests(net, "b.test")[0].signed, false, "key fetches are unsigned");
    // Cached: no new request.
    assert.deepEqual(await a.deps.keyRing.verifyKey("b.test", b.keyId, clock.now()), b.publicKey);
    assert.equal(keyRequests(net, "b.test").length, 1);
    // Another key ring (another isolate) over the same KV sees the cached key, fetching nothing.
    const offline: FederationTransport = {
      request: () => Promise.reject(new Error("this key ring must not fetch")),
    };
    const second = new FederationKeyRing({
      own: a.deps.keyring,
      store: new KvServerKeyStore(a.kv),
      transport: offline,
      now: clock.now,
    });
    assert.deepEqual(await second.verifyKey("b.test", b.keyId, clock.now()), b.publicKey);
    // An unknown key ID of a known server: fetched again, still unknown.
    assert.equal(await a.deps.keyRing.verifyKey("b.test", "ed25519:nope", clock.now()), undefined);
    assert.equal(keyRequests(net, "b.test").length, 2);

    // B's document is valid for a day; two days on, the key ring asks again.
    const fetchedAt = clock.now();
    clock.advance(2 * DAY);
    assert.deepEqual(await a.deps.keyRing.verifyKey("b.test", b.keyId, clock.now()), b.publicKey);
    assert.equal(keyRequests(net, "b.test").length, 3);
    // With B down and the cache past its validity, the key is not valid now...
    clock.advance(2 * DAY);
    net.setReachable("b.test", false);
    assert.equal(await a.deps.keyRing.verifyKey("b.test", b.keyId, clock.now()), undefined);
    // ...but still is for what B signed while it was valid.
    assert.deepEqual(await a.deps.keyRing.verifyKey("b.test", b.keyId, fetchedAt), b.publicKey);
  } finally {
    await net.close();
  }
});

Deno.test("key ring: a key ID no server could have published is unknown, never looked up or fetched", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  try {
    const a = net.servers["a.test"];
    // Past KV's key limit: the read itself would throw, and a PDU's answer would say so.
    for (const keyId of [`ed25519:${"k".repeat(3000)}`, `ed25519:${"k".repeat(248)}`, "rsa:1"]) {
      assert.equal(await a.deps.keyRing.verifyKey("b.test", keyId, Date.now()), undefined);
    }
    assert.equal(keyRequests(net, "b.test").length, 0);
  } finally {
    await net.close();
  }
});

Deno.test("key ring: validity is capped at 7 days after fetching; old keys end at expired_ts", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "c.test"], { now: clock.now });
  try {
    const c = await signingKeyFromSeed(seed(3), "ed25519:c1");
    const cOld = await signingKeyFromSeed(seed(4), "ed25519:c0");
    const expiredTs = clock.now() - DAY;
    const doc = await keyDocument("c.test", c, clock.now() + 365 * DAY, {
      old_verify_keys: {
        [cOld.keyId]: { key: encodeBase64Unpadded(cOld.publicKey), expired_ts: expiredTs },
      },
    });
    serveFakeServers(net, new Map([["c.test", () => ({ status: 200, body: doc })]]));
    const ring = net.servers["a.test"].deps.keyRing;
    assert.deepEqual(await ring.verifyKey("c.test", c.keyId, clock.now()), c.publicKey);
    assert.deepEqual(await ring.verifyKey("c.test", cOld.keyId, expiredTs - 1), cOld.publicKey);
    assert.equal(keyRequests(net, "c.test").length, 1);
    // After expired_ts the old key is refused (after asking again, in case it came back).
    assert.equal(await ring.verifyKey("c.test", cOld.keyId, expiredTs + 1), undefined);
    assert.equal(keyRequests(net, "c.test").length, 2);
    // Room versions 1-4 ask at 0: any key the server ever published.
    assert.deepEqual(await ring.verifyKey("c.test", cOld.keyId, 0), cOld.publicKey);
    // A year of validity is trusted for 7 days only.
    const fetched = clock.now();
    clock.advance(6 * DAY);
    assert.deepEqual(await ring.verifyKey("c.test", c.keyId, clock.now()), c.publicKey);
    assert.equal(keyRequests(net, "c.test").length, 2);
    net.setReachable("c.test", false);
    clock.advance(2 * DAY);
    assert.equal(await ring.verifyKey("c.test", c.keyId, clock.now()), undefined);
    assert.deepEqual(await ring.verifyKey("c.test", c.keyId, fetched + DAY), c.publicKey);
  } finally {
    await net.close();
  }
});

Deno.test("key ring: forged or misaddressed key documents are refused and not cached", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "c.test"], { now: clock.now });
  try {
    const c = await signingKeyFromSeed(seed(3), "ed25519:c1");
    const mallory = await signingKeyFromSeed(seed(66), "ed25519:c1");
    const valid = clock.now() + DAY;
    const genuine = await keyDocument("c.test", c, valid);
    const forgeries: [string, JsonObject][] = [
      // Signed by another key under the listed key's ID.
      ["wrong signer", await keyDocument("c.test", c, valid, {}, mallory)],
      // Mallory's key, signed by Mallory, but the document is about another server.
      ["other server", await keyDocument("d.test", mallory, valid)],
      // The genuine document with its validity stretched after signing.
      ["tampered", { ...genuine, valid_until_ts: valid + 365 * DAY }],
      // Signed by a key the document does not list.
      [
        "unlisted signer",
        await keyDocument(
          "c.test",
          mallory,
          valid,
          {},
          await signingKeyFromSeed(seed(3), "ed25519:zz"),
        ),
      ],
      ["unsigned", { ...genuine, signatures: {} }],
      ["short key", { ...genuine, verify_keys: { "ed25519:c1": { key: "AAAA" } } }],
    ];
    const ring = net.servers["a.test"].deps.keyRing;
    const store = new KvServerKeyStore(net.servers["a.test"].kv);
    for (const [i, [what, body]] of forgeries.entries()) {
      serveFakeServers(net, new Map([["c.test", () => ({ status: 200, body })]]));
      assert.equal(await ring.verifyKey("c.test", "ed25519:c1", clock.now()), undefined, what);
      assert.equal(keyRequests(net, "c.test").length, i + 1, `${what}: fetched`);
      assert.equal(await store.getKey("c.test", "ed25519:c1"), undefined, what);
      // Failures back off (past the first); move on so each forgery is fetched.
      clock.advance(2 * 60 * 60 * 1000);
    }
    serveFakeServers(net, new Map([["c.test", () => ({ status: 200, body: genuine })]]));
    assert.deepEqual(await ring.verifyKey("c.test", "ed25519:c1", clock.now()), c.publicKey);
  } finally {
    await net.close();
  }
});

Deno.test("key ring: a server whose fetches fail is backed off, in KV for every key ring", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test"], { now: clock.now });
  try {
    const a = net.servers["a.test"];
    const ask = () => a.deps.keyRing.verifyKey("gone.test", "ed25519:k", clock.now());
    assert.equal(await ask(), undefined);
    assert.equal(await ask(), undefined); // one failure may be a blip: asked again
    assert.equal(keyRequests(net, "gone.test").length, 2);
    assert.equal(await ask(), undefined); // two in a row: a minute's rest
    assert.equal(keyRequests(net, "gone.test").length, 2);
    const second = new FederationKeyRing({
      own: a.deps.keyring,
      store: new KvServerKeyStore(a.kv),
      transport: net.transportFor("a.test"),
      now: clock.now,
    });
    assert.equal(await second.verifyKey("gone.test", "ed25519:k", clock.now()), undefined);
    assert.equal(keyRequests(net, "gone.test").length, 2, "the backoff is shared through KV");
    clock.advance(61_000);
    assert.equal(await ask(), undefined);
    assert.equal(keyRequests(net, "gone.test").length, 3);
    // The next rest is longer: two minutes.
    clock.advance(61_000);
    assert.equal(await ask(), undefined);
    assert.equal(keyRequests(net, "gone.test").length, 3);
    const store = new KvServerKeyStore(a.kv);
    assert.equal((await store.getFetchFailure("gone.test"))?.failures, 3);
  } finally {
    await net.close();
  }
});

Deno.test("notary: GET and POST answer with the origin's document, countersigned", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "b.test"], { now: clock.now });
  try {
    const a = net.servers["a.test"];
    const aKey = a.deps.keyring.current;
    const bKey = net.servers["b.test"].deps.keyring.current;
    const check = (serverKeys: JsonObject[]) => {
      assert.equal(serverKeys.length, 1);
      const doc = serverKeys[0];
      assert.equal(doc.server_name, "b.test");
      assert.deepEqual(Object.keys(doc.verify_keys as JsonObject), [bKey.keyId]);
      assert.deepEqual(Object.keys((doc.signatures as JsonObject)["a.test"] as JsonObject), [
        aKey.keyId,
      ]);
      return Promise.all([
        verifyJsonSignature(doc, "a.test", aKey.keyId, aKey.publicKey),
        verifyJsonSignature(doc, "b.test", bKey.keyId, bKey.publicKey),
      ]);
    };
    const get = await a.request("GET", "/_matrix/key/v2/query/b.test");
    assert.equal(get.status, 200);
    assert.deepEqual(await check(get.body.server_keys), [true, true]);
    const getOne = await a.request(
      "GET",
      `/_matrix/key/v2/query/b.test/${bKey.keyId}?minimum_valid_until_ts=${clock.now()}`,
    );
    assert.deepEqual(await check(getOne.body.server_keys), [true, true]);
    const post = await a.request("POST", "/_matrix/key/v2/query", {
      body: {
        server_keys: { "b.test": { [bKey.keyId]: { minimum_valid_until_ts: clock.now() } } },
      },
    });
    assert.equal(post.status, 200);
    assert.deepEqual(await check(post.body.server_keys), [true, true]);
    // All three answered from the first fetch.
    assert.equal(keyRequests(net, "b.test").length, 1);
    // A minimum beyond the cached validity makes the notary ask again.
    await a.request("POST", "/_matrix/key/v2/query", {
      body: {
        server_keys: {
          "b.test": { [bKey.keyId]: { minimum_valid_until_ts: clock.now() + 2 * DAY } },
        },
      },
    });
    assert.equal(keyRequests(net, "b.test").length, 2);
    // About ourselves: our own document. About nobody: nothing. No servers: nothing.
    const own = await a.request("POST", "/_matrix/key/v2/query", {
      body: { server_keys: { "a.test": {}, "nowhere.test": { "ed25519:x": {} } } },
    });
    assert.equal(own.body.server_keys.length, 1);
    assert.equal(own.body.server_keys[0].server_name, "a.test");
    const none = await a.request("POST", "/_matrix/key/v2/query", { body: { server_keys: {} } });
    assert.deepEqual(none.body, { server_keys: [] });
  } finally {
    await net.close();
  }
});

Deno.test("notary: serves expired and forgotten keys it holds when the origin cannot do better", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "c.test"], { now: clock.now });
  try {
    const a = net.servers["a.test"];
    const key1 = await signingKeyFromSeed(seed(11), "ed25519:key_1");
    const key2 = await signingKeyFromSeed(seed(12), "ed25519:key_2");
    const expiry = clock.now() - DAY;
    let answer: FederationResponse = {
      status: 200,
      body: await keyDocument("c.test", key1, expiry),
    };
    serveFakeServers(net, new Map([["c.test", () => answer]]));
    const query = (keyId: string, minimum: number) =>
      a.request("POST", "/_matrix/key/v2/query", {
        body: { server_keys: { "c.test": { [keyId]: { minimum_valid_until_ts: minimum } } } },
      });
    const first = await query("ed25519:key_1", 0);
    assert.equal(first.body.server_keys[0].valid_until_ts, expiry);
    // The origin now answers with another key only: key_1 is not forgotten.
    answer = { status: 200, body: await keyDocument("c.test", key2, expiry + 1000) };
    await query("ed25519:key_1", clock.now());
    assert.equal(keyRequests(net, "c.test").length, 2);
    const kept = await query("ed25519:key_1", expiry);
    assert.deepEqual(Object.keys(kept.body.server_keys[0].verify_keys), ["ed25519:key_1"]);
    assert.equal(keyRequests(net, "c.test").length, 2, "a cached key meeting the minimum");
    // The origin fails: the expired key is still served.
    answer = { status: 400, body: {} };
    const stale = await query("ed25519:key_1", clock.now());
    assert.equal(keyRequests(net, "c.test").length, 3);
    assert.equal(stale.body.server_keys[0].valid_until_ts, expiry);
    // All keys of the server: both documents.
    const all = await a.request("GET", "/_matrix/key/v2/query/c.test");
    assert.deepEqual(
      all.body.server_keys.map((d: JsonObject) => Object.keys(d.verify_keys as JsonObject)[0])
        .sort(),
      ["ed25519:key_1", "ed25519:key_2"],
    );
  } finally {
    await net.close();
  }
});

Deno.test("notary: bad queries are refused before any fetch", async () => {
  const net = await startNetwork(["a.test"]);
  try {
    const a = net.servers["a.test"];
    const cases: [string, string, unknown, number, string][] = [
      ["GET", "/_matrix/key/v2/query/not%20a%20server", undefined, 400, "M_INVALID_PARAM"],
      [
        "GET",
        "/_matrix/key/v2/query/b.test?minimum_valid_until_ts=soon",
        undefined,
        400,
        "M_INVALID_PARAM",
      ],
      ["POST", "/_matrix/key/v2/query", { server_keys: [] }, 400, "M_BAD_JSON"],
      ["POST", "/_matrix/key/v2/query", {}, 400, "M_MISSING_PARAM"],
      [
        "POST",
        "/_matrix/key/v2/query",
        { server_keys: { "bad name!": {} } },
        400,
        "M_INVALID_PARAM",
      ],
      [
        "POST",
        "/_matrix/key/v2/query",
        { server_keys: { "b.test": { "ed25519:x": { minimum_valid_until_ts: "later" } } } },
        400,
        "M_BAD_JSON",
      ],
      [
        "POST",
        "/_matrix/key/v2/query",
        {
          server_keys: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`s${i}.test`, {}])),
        },
        413,
        "M_TOO_LARGE",
      ],
      [
        "POST",
        "/_matrix/key/v2/query",
        {
          server_keys: {
            "b.test": Object.fromEntries(
              Array.from({ length: 21 }, (_, i) => [`ed25519:k${i}`, {}]),
            ),
          },
        },
        413,
        "M_TOO_LARGE",
      ],
    ];
    for (const [method, path, body, status, errcode] of cases) {
      const res = await a.request(method, path, body === undefined ? {} : { body });
      assert.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}`);
      assert.equal(res.body.errcode, errcode, `${method} ${path}`);
    }
    assert.equal(net.log.length, 0);
  } finally {
    await net.close();
  }
});

Deno.test("key ring: falls back to a notary, whose signature must verify", async () => {
  const clock = manualClock();
  const notarySeed = seed(21);
  const notaryKey = (await keyringFromSeed("n.test", notarySeed)).current;
  for (const pinned of [false, true]) {
    const trusted = pinned
      ? `n.test ${notaryKey.keyId}=${encodeBase64Unpadded(notaryKey.publicKey)}`
      : "n.test";
    const net = await startNetwork(["a.test", "b.test", "n.test"], {
      now: clock.now,
      envFor: {
        "a.test": { TESSERA_TRUSTED_KEY_SERVERS: trusted },
        "n.test": { TESSERA_SIGNING_KEY: encodeBase64Unpadded(notarySeed) },
      },
    });
    try {
      const bKey = net.servers["b.test"].deps.keyring.current;
      // A cannot reach B; the notary can.
      net.intercept((
        r,
      ) => (r.origin === "a.test" && r.destination === "b.test" ? "drop" : "deliver"));
      const ring = net.servers["a.test"].deps.keyRing;
      assert.deepEqual(await ring.verifyKey("b.test", bKey.keyId, clock.now()), bKey.publicKey);
      assert.equal(keyRequests(net, "b.test", "n.test").length, 1);
      assert.equal(
        net.log.some((r) =>
          r.origin === "a.test" && r.destination === "n.test" && r.path === "/_matrix/key/v2/server"
        ),
        !pinned,
        "a pinned notary key is never fetched",
      );
    } finally {
      await net.close();
    }
  }
  // A notary answer that the notary did not sign (or a forged origin document) is refused.
  const net = await startNetwork(["a.test", "n.test"], {
    now: clock.now,
    envFor: { "a.test": { TESSERA_TRUSTED_KEY_SERVERS: "n.test" } },
  });
  try {
    const c = await signingKeyFromSeed(seed(3), "ed25519:c1");
    const mallory = await signingKeyFromSeed(seed(66), "ed25519:m");
    const unsignedByNotary = await keyDocument("c.test", c, clock.now() + DAY);
    const forgedOrigin = await signJson(
      await keyDocument("c.test", c, clock.now() + DAY, {}, mallory),
      "n.test",
      net.servers["n.test"].deps.keyring.current,
    );
    for (const entry of [unsignedByNotary, forgedOrigin]) {
      net.intercept((r) => {
        if (r.destination === "c.test") return "drop";
        if (r.destination === "n.test" && r.path === "/_matrix/key/v2/query") {
          return { status: 200, body: { server_keys: [entry] } };
        }
        return "deliver";
      });
      clock.advance(2 * 60 * 60 * 1000);
      const ring = net.servers["a.test"].deps.keyRing;
      const asked = net.log.length;
      assert.equal(await ring.verifyKey("c.test", c.keyId, clock.now()), undefined);
      assert.ok(
        net.log.slice(asked).some((r) =>
          r.destination === "n.test" && r.path === "/_matrix/key/v2/query"
        ),
        "the notary was asked",
      );
    }
  } finally {
    await net.close();
  }
});

Deno.test("notary: a second notary over the same KV answers from the cache", async () => {
  const clock = manualClock();
  const net = await startNetwork(["a.test", "b.test"], { now: clock.now });
  try {
    const a = net.servers["a.test"];
    const bKey = net.servers["b.test"].deps.keyring.current;
    await a.deps.keyRing.verifyKey("b.test", bKey.keyId, clock.now());
    const notary = new KeyNotary({
      own: a.deps.keyring,
      store: new KvServerKeyStore(a.kv),
      fetchDirect: () => Promise.reject(new Error("must not fetch")),
      now: clock.now,
    });
    const docs = await notary.query(new Map([["b.test", new Map([[bKey.keyId, undefined]])]]));
    assert.equal(docs.length, 1);
    const verifyKeys = docs[0].verify_keys as Record<string, { key: string }>;
    assert.deepEqual(decodeBase64(verifyKeys[bKey.keyId].key), bKey.publicKey);
  } finally {
    await net.close();
  }
});

Deno.test("notary: queries are rate-limited per client address", async () => {
  const net = await startNetwork(["a.test"], { env: { TESSERA_RATE_LIMITS: "on" } });
  try {
    const a = net.servers["a.test"];
    const env = (hostname: string) => ({ remoteAddr: { transport: "tcp", hostname, port: 5000 } });
    const query = (hostname: string) =>
      a.app.request("/_matrix/key/v2/query/a.test", {}, env(hostname));
    const statuses: number[] = [];
    for (let i = 0; i < 101; i++) statuses.push((await query("192.0.2.1")).status);
    assert.deepEqual(statuses.slice(0, 100), Array(100).fill(200));
    const limited = await query("192.0.2.1");
    assert.equal(limited.status, 429);
    assert.equal((await limited.json()).errcode, "M_LIMIT_EXCEEDED");
    assert.equal((await query("192.0.2.2")).status, 200, "another address has its own bucket");
    // Our own key document is not limited.
    const own = await a.app.request("/_matrix/key/v2/server", {}, env("192.0.2.1"));
    assert.equal(own.status, 200);
  } finally {
    await net.close();
  }
});
