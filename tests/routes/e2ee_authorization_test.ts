/**
 * One user attacking another's E2EE data over HTTP: alice, with a valid session, tries to read,
 * overwrite and delete bob's key backup, upload keys for bob's device, sign bob's keys with the
 * wrong keys, read bob's to-device messages and see bob's private cross-signing data. Each
 * attempt must fail, and bob's data must be unchanged afterwards.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  newCrossSigning,
  newDeviceKeys,
  type TestCrossSigning,
} from "../domain/e2ee/cross_signing_fixtures.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
const ROOM = encodeURIComponent("!room:example.org:8448");

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** A user with device keys and cross-signing keys uploaded. */
async function cryptoUser(server: Server, name: string) {
  const user = await registerUser(server, name);
  const device = await newDeviceKeys(user.userId, user.deviceId);
  const cross = await newCrossSigning(user.userId);
  const call = (method: string, path: string, body?: unknown) =>
    server.request(method, V3 + path, { token: user.accessToken, body });
  assertEquals((await call("POST", "/keys/upload", { device_keys: device.keys })).status, 200);
  const signing = await call("POST", "/keys/device_signing/upload", {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  });
  assertEquals(signing.status, 200);
  return { user, device, cross, call };
}

/** What bob's keys look like to bob, to compare before and after the attacks. */
async function bobsView(server: Server, bob: RegisteredUser) {
  const res = await server.request("POST", `${V3}/keys/query`, {
    token: bob.accessToken,
    body: { device_keys: { [bob.userId]: [] } },
  });
  return res.body;
}

Deno.test("a user cannot read, change or delete another user's key backup", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const as = (user: RegisteredUser) => (method: string, path: string, body?: unknown) =>
      server.request(method, V3 + path, { token: user.accessToken, body });
    const key = {
      first_message_index: 0,
      forwarded_count: 0,
      is_verified: true,
      session_data: { ciphertext: "bob's secret" },
    };
    const backup = {
      algorithm: "m.megolm_backup.v1.curve25519-aes-sha2",
      auth_data: { public_key: "bob" },
    };
    assertEquals((await as(bob)("POST", "/room_keys/version", backup)).body, { version: "1" });
    assertEquals((await as(bob)("PUT", `/room_keys/keys/${ROOM}/S?version=1`, key)).status, 200);
    const bobBefore = await as(bob)("GET", "/room_keys/version");

    const attempts: [string, string, unknown?][] = [
      ["GET", "/room_keys/version"],
      ["GET", "/room_keys/version/1"],
      ["PUT", "/room_keys/version/1", { ...backup, auth_data: { public_key: "alice" } }],
      ["DELETE", "/room_keys/version/1"],
      ["GET", "/room_keys/keys?version=1"],
      ["GET", `/room_keys/keys/${ROOM}?version=1`],
      ["GET", `/room_keys/keys/${ROOM}/S?version=1`],
      ["PUT", `/room_keys/keys/${ROOM}/S?version=1`, { ...key, first_message_index: 0 }],
      ["PUT", `/room_keys/keys/${ROOM}/T?version=1`, key],
      ["DELETE", `/room_keys/keys/${ROOM}/S?version=1`],
      ["DELETE", `/room_keys/keys/${ROOM}?version=1`],
      ["DELETE", "/room_keys/keys?version=1"],
    ];
    for (const [method, path, body] of attempts) {
      const res = await as(alice)(method, path, body);
      assertEquals([method, path, res.status, res.body.errcode], [
        method,
        path,
        404,
        "M_NOT_FOUND",
      ]);
    }
    // Alice's own backup is a separate version 1, and writing to it leaves bob's alone.
    assertEquals((await as(alice)("POST", "/room_keys/version", backup)).body, { version: "1" });
    assertEquals(
      (await as(alice)("PUT", `/room_keys/keys/${ROOM}/S?version=1`, {
        ...key,
        session_data: { ciphertext: "alice's" },
      })).status,
      200,
    );
    assertEquals((await as(bob)("GET", "/room_keys/version")).body, bobBefore.body);
    assertEquals((await as(bob)("GET", `/room_keys/keys/${ROOM}/S?version=1`)).body, key);
  } finally {
    server.close();
  }
});

Deno.test("a user cannot upload keys for, or sign with wrong keys, another user's devices", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await cryptoUser(server, "alice");
    const bob = await cryptoUser(server, "bob");
    const a = alice.user.userId;
    const b = bob.user.userId;
    const before = await bobsView(server, bob.user);

    // Keys for bob's device, in the body or in the legacy path.
    const forged = await newDeviceKeys(b, bob.user.deviceId);
    for (
      const [path, body] of [
        ["/keys/upload", { device_keys: forged.keys }],
        [`/keys/upload/${bob.user.deviceId}`, { device_keys: forged.keys }],
        [`/keys/upload/${bob.user.deviceId}`, { one_time_keys: { "signed_curve25519:X": "k" } }],
      ] as const
    ) {
      const res = await alice.call("POST", path, body);
      assertEquals([path, res.status, res.body.errcode], [path, 400, "M_INVALID_PARAM"]);
    }
    // Cross-signing keys claiming to be bob's.
    const bobsNewKeys: TestCrossSigning = await newCrossSigning(b);
    const signing = await alice.call("POST", "/keys/device_signing/upload", {
      master_key: bobsNewKeys.upload.master,
    });
    assertEquals(signing.status, 400);

    // Signatures: bob's device signed with alice's self-signing key; bob's master key signed
    // with alice's self-signing key instead of her user-signing key; bob's self-signing key.
    const bobsDevice = bob.device.keys;
    const bobsMaster = bob.cross.upload.master;
    const aliceSsk = `ed25519:${alice.cross.selfSigning.publicKey}`;
    const attempts = {
      [b]: {
        [bob.user.deviceId]: await alice.cross.selfSigning.sign(bobsDevice, a, aliceSsk),
        [bob.cross.master.publicKey]: await alice.cross.selfSigning.sign(bobsMaster, a, aliceSsk),
        [bob.cross.selfSigning.publicKey]: await alice.cross.userSigning.sign(
          bob.cross.upload.self_signing,
          a,
        ),
      },
    };
    const signatures = await alice.call("POST", "/keys/signatures/upload", attempts);
    assertEquals(signatures.status, 200);
    assertEquals(Object.keys(signatures.body.failures[b]).sort(), Object.keys(attempts[b]).sort());
    for (const failure of Object.values(signatures.body.failures[b])) {
      assert(typeof (failure as { errcode: string }).errcode === "string");
    }
    // Nothing about bob's keys changed for bob.
    assertEquals(await bobsView(server, bob.user), before);

    // The one thing alice may do: sign bob's master key with her user-signing key. Only alice
    // sees that signature; bob and a third user do not, and bob's user-signing key stays his.
    const usk = `ed25519:${alice.cross.userSigning.publicKey}`;
    const signedMaster = await alice.cross.userSigning.sign(bobsMaster, a);
    const signature = (signedMaster.signatures as Record<string, Record<string, string>>)[a][usk];
    const verified = await alice.call("POST", "/keys/signatures/upload", {
      [b]: { [bob.cross.master.publicKey]: signedMaster },
    });
    assertEquals(verified.body, { failures: {} });
    const carol = await cryptoUser(server, "carol");
    const query = { device_keys: { [b]: [] } };
    const seenBy = async (call: typeof alice.call) =>
      (await call("POST", "/keys/query", query)).body;
    assertEquals((await seenBy(alice.call)).master_keys[b].signatures[a], { [usk]: signature });
    assertEquals((await seenBy(bob.call)).master_keys[b].signatures?.[a], undefined);
    assertEquals((await seenBy(carol.call)).master_keys[b].signatures?.[a], undefined);
    assertEquals((await seenBy(alice.call)).user_signing_keys, {});
    assertEquals((await seenBy(carol.call)).user_signing_keys, {});
    assertEquals(Object.keys((await seenBy(bob.call)).user_signing_keys), [b]);
  } finally {
    server.close();
  }
});
