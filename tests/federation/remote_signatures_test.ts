/**
 * Verifying a user on another server over the in-process network: bob on B signs alice's (on A)
 * master key with his user-signing key. B checks it against the master key A publishes (from
 * B's cache of alice's keys while they share a room, else asked of A), keeps it, and shows it
 * on bob's own /keys/query of alice only, on her current master key, by his current
 * user-signing key; nothing of it goes over federation. Refusals are per item.
 */
import assert from "node:assert/strict";
import type { Network, NetworkServer } from "./in_process_network.ts";
import { createRoom, joinThrough, ok, withNetwork } from "./network_helpers.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import {
  crossSigningKey,
  newCrossSigning,
  newDeviceKeys,
  newKeyPair,
  type TestCrossSigning,
} from "../domain/e2ee/cross_signing_fixtures.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const V3 = "/_matrix/client/v3";
const PASSWORD = "correct horse";
const enc = encodeURIComponent;

interface CryptoUser {
  user: RegisteredUser;
  cross: TestCrossSigning;
  server: NetworkServer;
}

/** Register `localpart` on `server` with device keys and all three cross-signing keys. */
async function cryptoUser(server: NetworkServer, localpart: string): Promise<CryptoUser> {
  const user = await registerUser(server, localpart, PASSWORD);
  const { keys } = await newDeviceKeys(user.userId, user.deviceId);
  await ok(server, user, "POST", `${V3}/keys/upload`, { device_keys: keys });
  const cross = await newCrossSigning(user.userId);
  await ok(server, user, "POST", `${V3}/keys/device_signing/upload`, {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  });
  return { user, cross, server };
}

/** Replace some of `who`'s cross-signing keys (user-interactive auth by password). */
async function replaceKeys(who: CryptoUser, keys: JsonObject): Promise<void> {
  await ok(who.server, who.user, "POST", `${V3}/keys/device_signing/upload`, {
    ...keys,
    auth: {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: who.user.userId },
      password: PASSWORD,
    },
  });
}

/** `signer`'s user-signing signature on `target`'s master key `master`, as an upload body. */
async function signatureOf(signer: CryptoUser, target: CryptoUser, master = target.cross) {
  return {
    [target.user.userId]: {
      [master.master.publicKey]: await signer.cross.userSigning.sign(
        master.upload.master,
        signer.user.userId,
      ),
    },
  };
}

/** Upload `body` as `signer`; the failures. */
async function upload(signer: CryptoUser, body: JsonObject) {
  const res = await ok(signer.server, signer.user, "POST", `${V3}/keys/signatures/upload`, body);
  return res.failures as Record<string, Record<string, { errcode: string; error: string }>>;
}

/** `viewer`'s /keys/query of `target`: the master key's signatures by `signer`. */
async function signaturesSeen(viewer: CryptoUser, target: CryptoUser, signer: CryptoUser) {
  const res = await ok(viewer.server, viewer.user, "POST", `${V3}/keys/query`, {
    device_keys: { [target.user.userId]: [] },
  });
  const master = res.master_keys[target.user.userId] as JsonObject | undefined;
  assert.ok(master, `no master key of ${target.user.userId}: ${JSON.stringify(res.failures)}`);
  const signatures = (master.signatures ?? {}) as Record<string, Record<string, string>>;
  return { keys: master.keys, bySigner: signatures[signer.user.userId] ?? {} };
}

/** The key ID of `who`'s user-signing key. */
const uskId = (who: CryptoUser) => `ed25519:${who.cross.userSigning.publicKey}`;

/** Requests `origin` made to `destination` after the first `from` of the log. */
function requestsAfter(net: Network, from: number, origin: string, destination: string) {
  return net.log.slice(from).filter((r) => r.origin === origin && r.destination === destination);
}

/** True when any federation request so far carried `text` (in its path or body). */
function sentOverFederation(net: Network, text: string): boolean {
  return net.log.some((r) => `${r.path} ${JSON.stringify(r.body ?? null)}`.includes(text));
}

/** Drain both servers' outboxes (the transactions go through the network at once). */
async function flush(net: Network): Promise<void> {
  await net.servers[A].deps.federationSender.runOnce();
  await net.servers[B].deps.federationSender.runOnce();
}

Deno.test("verifying a user sharing a room: checked against B's cache, kept on B, shown to the signer only, never sent", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await cryptoUser(a, "alice");
    const bob = await cryptoUser(b, "bob");
    const carol = await cryptoUser(b, "carol");
    const roomId = await createRoom(a, alice.user, { preset: "public_chat" });
    await joinThrough(b, bob.user, roomId, A);
    await flush(net);
    // Bob's client reads alice's keys: B caches them (they share a room).
    const first = await signaturesSeen(bob, alice, bob);
    assert.deepEqual(first.keys, alice.cross.upload.master.keys);
    const since = (await ok(b, bob.user, "GET", `${V3}/sync?timeout=0`)).next_batch as string;

    // A is down: B's cache is what the signature is checked against.
    net.setReachable(A, false);
    const from = net.log.length;
    const body = await signatureOf(bob, alice);
    assert.deepEqual(await upload(bob, body), {});
    assert.deepEqual(requestsAfter(net, from, B, A), [], "B asked A although it caches alice");
    const signature = body[alice.user.userId][alice.cross.master.publicKey].signatures as Record<
      string,
      Record<string, string>
    >;
    const value = signature[bob.user.userId][uskId(bob)];

    // Bob sees it (from the cache while A is down); carol on B and alice on A do not.
    assert.deepEqual((await signaturesSeen(bob, alice, bob)).bySigner, { [uskId(bob)]: value });
    assert.deepEqual((await signaturesSeen(carol, alice, bob)).bySigner, {});
    net.setReachable(A, true);
    assert.deepEqual((await signaturesSeen(alice, alice, bob)).bySigner, {});
    // Bob's other devices are told to read alice's keys again.
    const sync = await ok(b, bob.user, "GET", `${V3}/sync?timeout=0&since=${enc(since)}`);
    assert.ok(sync.device_lists?.changed?.includes(alice.user.userId), JSON.stringify(sync));
    // Nothing of it goes over federation.
    await flush(net);
    assert.ok(!sentOverFederation(net, value), "bob's signature left B");

    // Alice replaces her master key: A's m.signing_key_update reaches B's cache, and bob's
    // signature of the old key is no longer shown.
    const next = await newCrossSigning(alice.user.userId);
    await replaceKeys(alice, {
      master_key: next.upload.master,
      self_signing_key: next.upload.self_signing,
      user_signing_key: next.upload.user_signing,
    });
    await flush(net);
    const afterReplace = await signaturesSeen(bob, alice, bob);
    assert.deepEqual(afterReplace.keys, next.upload.master.keys);
    assert.deepEqual(afterReplace.bySigner, {});
    // Signing the old key now fails; the new one is taken.
    const old = await upload(bob, body);
    assert.equal(old[alice.user.userId][alice.cross.master.publicKey].errcode, "M_NOT_FOUND");
    alice.cross = next;
    assert.deepEqual(await upload(bob, await signatureOf(bob, alice)), {});
    assert.ok((await signaturesSeen(bob, alice, bob)).bySigner[uskId(bob)]);

    // Bob replaces his user-signing key: his signature by the old one is no longer shown.
    const usk = await newKeyPair();
    await replaceKeys(bob, {
      user_signing_key: await bob.cross.master.sign(
        crossSigningKey(bob.user.userId, "user_signing", usk),
        bob.user.userId,
      ),
    });
    assert.deepEqual((await signaturesSeen(bob, alice, bob)).bySigner, {});
    // Neither user-signing key (in every signature's key ID) ever went over federation.
    await flush(net);
    assert.ok(!sentOverFederation(net, bob.cross.userSigning.publicKey));
    assert.ok(!sentOverFederation(net, usk.publicKey));
  });
});

Deno.test("verifying a user sharing no room: A asked for her master key; refusals per item, nothing kept", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await cryptoUser(a, "alice");
    const dave = await cryptoUser(b, "dave");
    const erin = await cryptoUser(b, "erin");

    // Nothing cached: B asks A for alice's keys (POST /user/keys/query) and checks against it.
    const from = net.log.length;
    const body = await signatureOf(dave, alice);
    assert.deepEqual(await upload(dave, body), {});
    assert.ok(
      requestsAfter(net, from, B, A).some((r) =>
        r.path === "/_matrix/federation/v1/user/keys/query"
      ),
    );
    // Dave's query (A asked again, nothing cached) shows it; erin's does not.
    const seen = await signaturesSeen(dave, alice, dave);
    assert.ok(seen.bySigner[uskId(dave)]);
    assert.deepEqual((await signaturesSeen(erin, alice, dave)).bySigner, {});
    await flush(net);
    assert.ok(!sentOverFederation(net, seen.bySigner[uskId(dave)]), "dave's signature left B");

    // Other things of alice's: her device, her master key signed by one of dave's devices or
    // his self-signing key, a key object that is not hers.
    const device = await newDeviceKeys(alice.user.userId, alice.user.deviceId);
    const daveDevice = await newKeyPair();
    const master = alice.cross.master.publicKey;
    const refused = await upload(erin, {
      [alice.user.userId]: {
        [alice.user.deviceId]: await erin.cross.userSigning.sign(device.keys, erin.user.userId),
      },
    });
    assert.equal(refused[alice.user.userId][alice.user.deviceId].errcode, "M_NOT_FOUND");
    const byDevice = await upload(erin, {
      [alice.user.userId]: {
        [master]: await daveDevice.sign(alice.cross.upload.master, erin.user.userId, "ed25519:E"),
      },
    });
    assert.equal(byDevice[alice.user.userId][master].errcode, "M_INVALID_SIGNATURE");
    const bySelfSigning = await upload(erin, {
      [alice.user.userId]: {
        [master]: await erin.cross.selfSigning.sign(alice.cross.upload.master, erin.user.userId),
      },
    });
    assert.equal(bySelfSigning[alice.user.userId][master].errcode, "M_INVALID_SIGNATURE");
    const other = await upload(erin, {
      [alice.user.userId]: {
        [master]: await erin.cross.userSigning.sign(
          { ...alice.cross.upload.master, usage: ["master", "other"] },
          erin.user.userId,
        ),
      },
    });
    assert.equal(other[alice.user.userId][master].errcode, "M_INVALID_PARAM");
    // A down and nothing cached: her key cannot be fetched.
    net.setReachable(A, false);
    const down = await upload(erin, await signatureOf(erin, alice));
    assert.equal(down[alice.user.userId][master].errcode, "M_NOT_FOUND");
    // A user of a server that does not exist.
    const nowhere = await upload(erin, {
      "@zed:nowhere.test": { [master]: { user_id: "@zed:nowhere.test" } },
    });
    assert.equal(nowhere["@zed:nowhere.test"][master].errcode, "M_NOT_FOUND");
    net.setReachable(A, true);
    // None of erin's attempts was kept.
    assert.deepEqual((await signaturesSeen(erin, alice, erin)).bySigner, {});
  });
});
