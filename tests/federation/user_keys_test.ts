/**
 * End-to-end encryption keys across servers over the in-process network: a client's
 * /keys/query and /keys/claim for a user on another server, the federation routes behind them
 * (/user/keys/query, /user/keys/claim, /user/devices/{userId}) called directly, a server that
 * cannot be reached or does not answer in time listed in `failures`, and a lying server whose
 * answers for users and devices it was not asked about (or may not speak for) are dropped.
 */
import assert from "node:assert/strict";
import { type Network, type NetworkServer } from "./in_process_network.ts";
import { ok, withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import {
  newCrossSigning,
  newDeviceKeys,
  type TestCrossSigning,
} from "../domain/e2ee/cross_signing_fixtures.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";
import {
  type FederationResponse,
  FederationUnreachable,
} from "../../domain/ports/federation_transport.ts";
import { RemoteKeyClient, RemoteKeyError } from "../../domain/federation/remote_keys.ts";

const V3 = "/_matrix/client/v3";
const FED = "/_matrix/federation/v1";
const OTK = "signed_curve25519";

interface CryptoUser {
  user: RegisteredUser;
  deviceKeys: JsonObject;
  cross: TestCrossSigning;
}

/** Register `name` on `server` with device keys, a one-time key and cross-signing keys. */
async function cryptoUser(server: NetworkServer, name: string): Promise<CryptoUser> {
  const user = await server.register(name);
  const { keys: deviceKeys } = await newDeviceKeys(user.userId, user.deviceId);
  await ok(server, user, "POST", `${V3}/keys/upload`, {
    device_keys: deviceKeys,
    one_time_keys: { [`${OTK}:AAAAAQ`]: { key: "one-time-key-1", signatures: {} } },
  });
  const cross = await newCrossSigning(user.userId);
  await ok(server, user, "POST", `${V3}/keys/device_signing/upload`, {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  });
  // Names are private to the server: they must not leave it.
  await ok(server, user, "PUT", `${V3}/devices/${encodeURIComponent(user.deviceId)}`, {
    display_name: `${name}'s laptop`,
  });
  return { user, deviceKeys, cross };
}

/** A federation request from `origin` to `destination`, signed by the network. */
function federation(
  net: Network,
  origin: string,
  destination: string,
  method: "GET" | "POST",
  path: string,
  body?: JsonObject,
): Promise<FederationResponse> {
  return net.transportFor(origin).request({
    destination,
    method,
    path,
    ...(body !== undefined ? { body } : {}),
  });
}

function object(value: JsonValue | null | undefined): JsonObject {
  assert.ok(value !== null && typeof value === "object" && !Array.isArray(value));
  return value as JsonObject;
}

Deno.test("a client's /keys/query answers for a user on another server", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"], b = net.servers["b.test"];
    const alice = await cryptoUser(a, "alice");
    const bob = await b.register("bob");
    const body = await ok(b, bob, "POST", `${V3}/keys/query`, {
      device_keys: { [alice.user.userId]: [] },
    });
    assert.deepEqual(body.failures, {});
    const device = body.device_keys[alice.user.userId][alice.user.deviceId];
    // What alice uploaded, signatures and all, and no display name.
    const { unsigned, ...signed } = device;
    assert.deepEqual(signed, alice.deviceKeys);
    assert.equal(unsigned?.device_display_name, undefined);
    assert.deepEqual(
      body.master_keys[alice.user.userId].keys,
      alice.cross.upload.master.keys,
    );
    assert.deepEqual(
      body.self_signing_keys[alice.user.userId],
      alice.cross.upload.self_signing,
    );
    // User-signing keys are their owner's alone.
    assert.deepEqual(body.user_signing_keys, {});
    assert.ok(
      net.log.some((r) => r.destination === "a.test" && r.path === `${FED}/user/keys/query`),
    );

    // Asking for one device of alice's gets that device only; an unknown one nothing.
    const one = await ok(b, bob, "POST", `${V3}/keys/query`, {
      device_keys: { [alice.user.userId]: ["NOSUCHDEVICE"] },
    });
    assert.deepEqual(one.device_keys[alice.user.userId], {});
  });
});

Deno.test("a client's /keys/claim takes a one-time key of a user on another server once", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"], b = net.servers["b.test"];
    const alice = await cryptoUser(a, "alice");
    const bob = await b.register("bob");
    const claim = { one_time_keys: { [alice.user.userId]: { [alice.user.deviceId]: OTK } } };
    const first = await ok(b, bob, "POST", `${V3}/keys/claim`, claim);
    assert.deepEqual(first, {
      one_time_keys: {
        [alice.user.userId]: {
          [alice.user.deviceId]: {
            [`${OTK}:AAAAAQ`]: { key: "one-time-key-1", signatures: {} },
          },
        },
      },
      failures: {},
    });
    const second = await ok(b, bob, "POST", `${V3}/keys/claim`, claim);
    assert.deepEqual(second, { one_time_keys: {}, failures: {} });
    const counts = await ok(a, alice.user, "POST", `${V3}/keys/upload`, {});
    assert.equal(counts.one_time_key_counts[OTK], 0);
  });
});

Deno.test("federation key routes answer for local users only, signed requests only", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"];
    const alice = await cryptoUser(a, "alice");
    const carol = await net.servers["b.test"].register("carol");

    // Anonymous callers are refused before anything is read.
    const anonymous = await a.request("POST", `${FED}/user/keys/query`, {
      body: { device_keys: { [alice.user.userId]: [] } },
    });
    assert.equal(anonymous.status, 401);
    const anonymousDevices = await a.request(
      "GET",
      `${FED}/user/devices/${encodeURIComponent(alice.user.userId)}`,
    );
    assert.equal(anonymousDevices.status, 401);

    // Query: alice answered, another server's user and unknown local users as Synapse does.
    const query = await federation(net, "b.test", "a.test", "POST", `${FED}/user/keys/query`, {
      device_keys: { [alice.user.userId]: [], [carol.userId]: [], "@nobody:a.test": [] },
    });
    assert.equal(query.status, 200);
    const answer = object(query.body);
    assert.deepEqual(
      Object.keys(object(answer.device_keys)).sort(),
      [
        "@nobody:a.test",
        alice.user.userId,
      ].sort(),
    );
    assert.deepEqual(object(answer.device_keys)["@nobody:a.test"], {});
    assert.deepEqual(Object.keys(object(answer.master_keys)), [alice.user.userId]);
    assert.deepEqual(Object.keys(object(answer.self_signing_keys)), [alice.user.userId]);
    assert.equal(answer.user_signing_keys, undefined);

    // Claim: alice's key; carol (not ours) ignored.
    const claim = await federation(net, "b.test", "a.test", "POST", `${FED}/user/keys/claim`, {
      one_time_keys: {
        [alice.user.userId]: { [alice.user.deviceId]: OTK },
        [carol.userId]: { [carol.deviceId]: OTK },
      },
    });
    assert.equal(claim.status, 200);
    assert.deepEqual(Object.keys(object(object(claim.body).one_time_keys)), [alice.user.userId]);

    // Devices: the list with keys, cross-signing keys, the device-list position.
    const devicesPath = `${FED}/user/devices/${encodeURIComponent(alice.user.userId)}`;
    const devices = await federation(net, "b.test", "a.test", "GET", devicesPath);
    assert.equal(devices.status, 200);
    const listed = object(devices.body);
    assert.equal(listed.user_id, alice.user.userId);
    assert.ok(typeof listed.stream_id === "number" && listed.stream_id > 0);
    assert.deepEqual(listed.devices, [{ device_id: alice.user.deviceId, keys: alice.deviceKeys }]);
    assert.deepEqual(object(listed.master_key).keys, alice.cross.upload.master.keys);
    assert.deepEqual(listed.self_signing_key, alice.cross.upload.self_signing);
    assert.equal(listed.user_signing_key, undefined);

    // A change to alice's devices moves the position on.
    await ok(a, alice.user, "PUT", `${V3}/devices/${encodeURIComponent(alice.user.deviceId)}`, {
      display_name: "renamed",
    });
    const again = object((await federation(net, "b.test", "a.test", "GET", devicesPath)).body);
    assert.ok((again.stream_id as number) > (listed.stream_id as number));
    assert.deepEqual(again.devices, listed.devices);

    // Another server's user: 400; an unknown local user: no devices.
    const foreign = await federation(
      net,
      "b.test",
      "a.test",
      "GET",
      `${FED}/user/devices/${encodeURIComponent(carol.userId)}`,
    );
    assert.equal(foreign.status, 400);
    const unknown = await federation(
      net,
      "b.test",
      "a.test",
      "GET",
      `${FED}/user/devices/${encodeURIComponent("@nobody:a.test")}`,
    );
    assert.equal(unknown.status, 200);
    assert.deepEqual(unknown.body, { user_id: "@nobody:a.test", stream_id: 0, devices: [] });
  });
});

Deno.test("federation key routes refuse bad bodies with 400, never 500", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"];
    const alice = await cryptoUser(a, "alice");
    const bad: [string, JsonObject][] = [
      ["query", {}],
      ["query", { device_keys: "everyone" }],
      ["query", { device_keys: { "not a user": [] } }],
      ["query", { device_keys: { [alice.user.userId]: [7] } }],
      ["query", { device_keys: { [alice.user.userId]: ["x".repeat(300)] } }],
      ["claim", {}],
      ["claim", { one_time_keys: { [alice.user.userId]: { [alice.user.deviceId]: 7 } } }],
      ["claim", { one_time_keys: { [alice.user.userId]: { [alice.user.deviceId]: "a b" } } }],
      ["claim", { one_time_keys: { "@:a.test": { D: OTK } } }],
      ["claim", { one_time_keys: [] as unknown as JsonObject }],
    ];
    for (const [route, body] of bad) {
      const res = await federation(
        net,
        "b.test",
        "a.test",
        "POST",
        `${FED}/user/keys/${route}`,
        body,
      );
      assert.equal(res.status, 400, `${route} ${JSON.stringify(body)}: ${res.status}`);
      assert.equal(typeof object(res.body).errcode, "string");
    }
    const badPath = await federation(
      net,
      "b.test",
      "a.test",
      "GET",
      `${FED}/user/devices/${encodeURIComponent("not a user")}`,
    );
    assert.equal(badPath.status, 400);
    // Nothing was claimed by the refused requests.
    const counts = await ok(a, alice.user, "POST", `${V3}/keys/upload`, {});
    assert.equal(counts.one_time_key_counts[OTK], 1);
  });
});

Deno.test("a server that cannot be reached, or does not answer in time, is listed in failures", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"], b = net.servers["b.test"];
    const alice = await cryptoUser(a, "alice");
    const bob = await cryptoUser(b, "bob");
    net.setReachable("a.test", false);
    const query = await ok(b, bob.user, "POST", `${V3}/keys/query`, {
      device_keys: { [alice.user.userId]: [], [bob.user.userId]: [] },
    });
    assert.deepEqual(Object.keys(query.failures), ["a.test"]);
    assert.equal(query.device_keys[alice.user.userId], undefined);
    // The local user is answered all the same.
    assert.ok(query.device_keys[bob.user.userId][bob.user.deviceId]);
    const claim = await ok(b, bob.user, "POST", `${V3}/keys/claim`, {
      one_time_keys: {
        [alice.user.userId]: { [alice.user.deviceId]: OTK },
        [bob.user.userId]: { [bob.user.deviceId]: OTK },
      },
    });
    assert.deepEqual(Object.keys(claim.failures), ["a.test"]);
    assert.deepEqual(Object.keys(claim.one_time_keys), [bob.user.userId]);
    net.setReachable("a.test", true);

    // A server that never answers: the client's timeout (here 0) ends the wait.
    let release = () => {};
    const hung = new Promise<FederationResponse>((resolve) => {
      release = () => resolve({ status: 500, body: null });
    });
    net.intercept((request) => request.destination === "a.test" ? hung : "deliver");
    try {
      const slowQuery = await ok(b, bob.user, "POST", `${V3}/keys/query`, {
        device_keys: { [alice.user.userId]: [] },
        timeout: 0,
      });
      assert.deepEqual(Object.keys(slowQuery.failures), ["a.test"]);
      const slowClaim = await ok(b, bob.user, "POST", `${V3}/keys/claim`, {
        one_time_keys: { [alice.user.userId]: { [alice.user.deviceId]: OTK } },
        timeout: 0,
      });
      assert.deepEqual(Object.keys(slowClaim.failures), ["a.test"]);
      assert.deepEqual(slowClaim.one_time_keys, {});
    } finally {
      release();
      net.intercept(undefined);
    }

    // An error answer is a failure too, not an empty success.
    net.intercept((request) =>
      request.destination === "a.test" ? { status: 500, body: { errcode: "M_UNKNOWN" } } : "deliver"
    );
    const refused = await ok(b, bob.user, "POST", `${V3}/keys/query`, {
      device_keys: { [alice.user.userId]: [] },
    });
    assert.deepEqual(Object.keys(refused.failures), ["a.test"]);
  }, ["a.test", "b.test"]);
});

Deno.test("a lying server's keys for users and devices it may not speak for are dropped", async () => {
  await withNetwork(async (net) => {
    const b = net.servers["b.test"];
    const bob = await b.register("bob");
    const alice = "@alice:a.test";
    const { keys: aliceKeys } = await newDeviceKeys(alice, "ALICEDEV");
    const { keys: charlieKeys } = await newDeviceKeys("@charlie:c.test", "CHARLIEDEV");
    const { keys: otherDeviceKeys } = await newDeviceKeys(alice, "OTHERDEV");
    const aliceCross = await newCrossSigning(alice);
    const charlieCross = await newCrossSigning("@charlie:c.test");
    net.intercept((request): "deliver" | FederationResponse => {
      if (request.destination !== "a.test") return "deliver";
      if (request.path === `${FED}/user/keys/query`) {
        return {
          status: 200,
          body: {
            device_keys: {
              [alice]: {
                ALICEDEV: { ...aliceKeys, unsigned: { device_display_name: "ok", evil: 1 } },
                // Filed under a device it does not name.
                MISFILED: otherDeviceKeys,
                // Not an object at all.
                BROKEN: "keys",
              },
              // Another server's user, never asked about.
              "@charlie:c.test": { CHARLIEDEV: charlieKeys },
            },
            master_keys: {
              // Names another user: dropped.
              [alice]: charlieCross.upload.master,
              "@charlie:c.test": charlieCross.upload.master,
            },
            self_signing_keys: { [alice]: aliceCross.upload.self_signing },
          },
        };
      }
      if (request.path === `${FED}/user/keys/claim`) {
        return {
          status: 200,
          body: {
            one_time_keys: {
              [alice]: {
                ALICEDEV: { [`${OTK}:K1`]: "key-1", [`${OTK}:K2`]: "key-2" },
                NOTASKED: { [`${OTK}:K3`]: "key-3" },
              },
              "@charlie:c.test": { CHARLIEDEV: { [`${OTK}:K4`]: "key-4" } },
            },
          },
        };
      }
      return "deliver";
    });
    const query = await ok(b, bob, "POST", `${V3}/keys/query`, {
      device_keys: { [alice]: [], "@charlie:c.test": [] },
    });
    assert.deepEqual(Object.keys(query.device_keys[alice]), ["ALICEDEV"]);
    assert.deepEqual(query.device_keys[alice].ALICEDEV, {
      ...aliceKeys,
      unsigned: { device_display_name: "ok" },
    });
    assert.equal(query.master_keys[alice], undefined);
    assert.deepEqual(query.self_signing_keys[alice], aliceCross.upload.self_signing);
    // c.test does not exist on this network: it fails, and a.test's word for charlie is ignored.
    assert.equal(query.device_keys["@charlie:c.test"], undefined);
    assert.equal(query.master_keys["@charlie:c.test"], undefined);
    assert.deepEqual(Object.keys(query.failures), ["c.test"]);

    const claim = await ok(b, bob, "POST", `${V3}/keys/claim`, {
      one_time_keys: { [alice]: { ALICEDEV: OTK } },
    });
    assert.deepEqual(claim.one_time_keys, { [alice]: { ALICEDEV: { [`${OTK}:K1`]: "key-1" } } });
    assert.deepEqual(claim.failures, {});

    // The resync call: wrong user is a failure; bad devices dropped or stripped of their keys.
    const client = new RemoteKeyClient({ transport: net.transportFor("b.test") });
    const answer = (body: JsonObject) =>
      net.intercept((r) => r.destination === "a.test" ? { status: 200, body } : "deliver");
    answer({ user_id: "@charlie:c.test", stream_id: 3, devices: [] });
    await assert.rejects(client.userDevices("a.test", alice), RemoteKeyError);
    answer({ user_id: alice, stream_id: -1, devices: [] });
    await assert.rejects(client.userDevices("a.test", alice), RemoteKeyError);
    await assert.rejects(client.userDevices("a.test", "@charlie:c.test"), RemoteKeyError);
    answer({
      user_id: alice,
      stream_id: 7,
      devices: [
        { device_id: "ALICEDEV", keys: aliceKeys, device_display_name: "phone" },
        { device_id: "MISFILED", keys: otherDeviceKeys },
        { device_id: "ALICEDEV", keys: aliceKeys },
        { keys: aliceKeys },
        "junk",
      ],
      master_key: aliceCross.upload.master,
      self_signing_key: charlieCross.upload.self_signing,
    });
    assert.deepEqual(await client.userDevices("a.test", alice), {
      userId: alice,
      streamId: 7,
      devices: [
        { deviceId: "ALICEDEV", keys: aliceKeys, displayName: "phone" },
        { deviceId: "MISFILED" },
      ],
      masterKey: aliceCross.upload.master,
    });
    // An answer past the size bound is not read at all.
    answer({ user_id: alice, stream_id: 8, devices: [], padding: "x".repeat(9 * 1024 * 1024) });
    await assert.rejects(client.userDevices("a.test", alice), FederationUnreachable);
    net.intercept(undefined);
  }, ["a.test", "b.test"]);
});

Deno.test("one-time key claims are rate limited per claiming server, taking no key when refused", async () => {
  // A fixed clock: no bucket refills while the test runs.
  const now = Date.now();
  await withNetwork(
    async (net) => {
      const a = net.servers["a.test"];
      const alice = await cryptoUser(a, "alice");
      const claim = (origin: string) =>
        federation(net, origin, "a.test", "POST", `${FED}/user/keys/claim`, {
          one_time_keys: { [alice.user.userId]: { NOSUCHDEVICE: OTK } },
        });
      let limited: FederationResponse | undefined;
      for (let i = 0; i < 200 && limited === undefined; i++) {
        const res = await claim("b.test");
        if (res.status === 429) limited = res;
        else assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      assert.ok(limited, "b.test was never rate limited");
      const body = object(limited.body);
      assert.equal(body.errcode, "M_LIMIT_EXCEEDED");
      assert.ok(typeof body.retry_after_ms === "number" && body.retry_after_ms > 0);
      // A refused claim takes nothing; c.test has a bucket of its own and gets alice's key.
      const real = await federation(net, "c.test", "a.test", "POST", `${FED}/user/keys/claim`, {
        one_time_keys: { [alice.user.userId]: { [alice.user.deviceId]: OTK } },
      });
      assert.equal(real.status, 200);
      assert.deepEqual(Object.keys(object(object(real.body).one_time_keys)), [alice.user.userId]);
    },
    ["a.test", "b.test", "c.test"],
    {
      now: () => now,
      envFor: { "a.test": { TESSERA_RATE_LIMITS: "on" } },
    },
  );
});

Deno.test("verifying a user on another server: the signature is the signer's, shown to them only", async () => {
  await withNetwork(async (net) => {
    const a = net.servers["a.test"], b = net.servers["b.test"];
    const alice = await cryptoUser(a, "alice");
    const bob = await cryptoUser(b, "bob");
    const carol = await cryptoUser(b, "carol");
    const aliceMaster = alice.cross.master.publicKey;
    const since = (await ok(b, bob.user, "GET", `${V3}/sync?timeout=0`)).next_batch;
    const signed = await bob.cross.userSigning.sign(
      alice.cross.upload.master,
      bob.user.userId,
    );
    const upload = await ok(b, bob.user, "POST", `${V3}/keys/signatures/upload`, {
      [alice.user.userId]: { [aliceMaster]: signed },
    });
    assert.deepEqual(upload.failures, {});
    const bobKey = `ed25519:${bob.cross.userSigning.publicKey}`;

    // Bob sees his verification of alice; carol (same server) and alice's server do not.
    const query = (server: NetworkServer, user: RegisteredUser) =>
      ok(server, user, "POST", `${V3}/keys/query`, { device_keys: { [alice.user.userId]: [] } });
    const bobView = await query(b, bob.user);
    assert.equal(
      bobView.master_keys[alice.user.userId].signatures[bob.user.userId]?.[bobKey],
      (signed.signatures as Record<string, Record<string, string>>)[bob.user.userId][bobKey],
    );
    const carolView = await query(b, carol.user);
    assert.equal(carolView.master_keys[alice.user.userId].signatures?.[bob.user.userId], undefined);
    const aliceView = await query(a, alice.user);
    assert.equal(aliceView.master_keys[alice.user.userId].signatures?.[bob.user.userId], undefined);
    // Bob's next sync names alice as changed, so his client re-reads her keys.
    const sync = await ok(b, bob.user, "GET", `${V3}/sync?timeout=0&since=${since}`);
    assert.ok(sync.device_lists.changed.includes(alice.user.userId), JSON.stringify(sync));

    // A key alice's server does not hold: refused, nothing stored.
    const forged = await bob.cross.userSigning.sign(
      { ...alice.cross.upload.master, usage: ["master"], extra: "field" },
      bob.user.userId,
    );
    const refused = await ok(b, bob.user, "POST", `${V3}/keys/signatures/upload`, {
      [alice.user.userId]: { [aliceMaster]: forged },
    });
    assert.equal(
      refused.failures[alice.user.userId][aliceMaster].errcode,
      "M_INVALID_PARAM",
    );
    // Alice's server unreachable: her key cannot be fetched, so the item fails.
    net.setReachable("a.test", false);
    const unreachable = await ok(b, carol.user, "POST", `${V3}/keys/signatures/upload`, {
      [alice.user.userId]: {
        [aliceMaster]: await carol.cross.userSigning.sign(
          alice.cross.upload.master,
          carol.user.userId,
        ),
      },
    });
    assert.equal(unreachable.failures[alice.user.userId][aliceMaster].errcode, "M_NOT_FOUND");
  });
});
