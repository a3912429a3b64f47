/**
 * Cross-signing use cases with real Ed25519 keys: key uploads (validation, signatures, UIA only
 * when replacing keys), signature uploads (the three accepted cases, per-key failures, device-list
 * updates and signature notices) and key queries (who sees which signature).
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { CrossSigningService } from "../../../domain/e2ee/cross_signing_service.ts";
import type { KnownDevice } from "../../../domain/e2ee/key_query.ts";
import { KvCrossSigningStore } from "../../../kv/cross_signing_store.ts";
import { deviceListUpdatesAfter } from "../../../kv/device_list_log.ts";
import {
  crossSigningKey,
  MemoryDeviceKeys,
  newCrossSigning,
  newDeviceKeys,
  newKeyPair,
} from "./cross_signing_fixtures.ts";

const SERVER = "example.org";
const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const CAROL = "@carol:example.org";

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const store = new KvCrossSigningStore(kv);
  const deviceKeys = new MemoryDeviceKeys();
  const devices = new Map<string, KnownDevice[]>();
  const listChanged: { userIds: string[]; versionstamp: string }[] = [];
  const userNotified: { userId: string; versionstamp: string }[] = [];
  const service = new CrossSigningService({
    store,
    deviceKeys,
    devicesOf: (userId) => Promise.resolve(devices.get(userId) ?? []),
    deviceListsChanged: (userIds, versionstamp) => {
      listChanged.push({ userIds, versionstamp });
      return Promise.resolve();
    },
    notifyUser: (userId, versionstamp) => userNotified.push({ userId, versionstamp }),
    serverName: SERVER,
  });
  /** Register a device with uploaded keys. */
  async function addDevice(userId: string, deviceId: string, displayName?: string) {
    const device = await newDeviceKeys(userId, deviceId);
    deviceKeys.put(userId, deviceId, device.keys);
    devices.set(userId, [...(devices.get(userId) ?? []), { deviceId, displayName }]);
    return device;
  }
  const noAuth = () => Promise.reject(new Error("UIA must not be asked for"));
  return { kv, store, service, deviceKeys, devices, listChanged, userNotified, addDevice, noAuth };
}

async function errcodeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MatrixError) return error.errcode;
    throw error;
  }
  return "none";
}

Deno.test("the first upload needs no UIA and records a cross-signing device-list update", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    await t.service.uploadSigningKeys(ALICE, alice.upload, t.noAuth);
    const stored = (await t.store.keysOf([ALICE])).get(ALICE)!;
    assertEquals(stored, alice.upload);
    const updates = await deviceListUpdatesAfter(t.kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.crossSigning, u.deviceIds]), [
      [1, [], true, []],
    ]);
    assertEquals(t.listChanged.map((c) => c.userIds), [[ALICE]]);
  } finally {
    t.kv.close();
  }
});

Deno.test("replacing keys needs UIA, an identical retry does not and writes nothing", async () => {
  const t = await setup();
  try {
    const first = await newCrossSigning(ALICE);
    await t.service.uploadSigningKeys(ALICE, first.upload, t.noAuth);
    // Retry of the same upload (a lost response): no auth, no new update.
    await t.service.uploadSigningKeys(ALICE, first.upload, t.noAuth);
    await t.service.uploadSigningKeys(ALICE, { master: first.upload.master }, t.noAuth);
    assertEquals((await deviceListUpdatesAfter(t.kv, ALICE)).length, 1);

    const second = await newCrossSigning(ALICE);
    const refused = new MatrixError("M_UNAUTHORIZED", 401, "auth please");
    let asked = 0;
    await assertRejects(
      () =>
        t.service.uploadSigningKeys(ALICE, second.upload, () => {
          asked++;
          return Promise.reject(refused);
        }),
      /auth please/,
    );
    assertEquals(asked, 1);
    assertEquals((await t.store.keysOf([ALICE])).get(ALICE), first.upload);

    await t.service.uploadSigningKeys(ALICE, second.upload, () => {
      asked++;
      return Promise.resolve();
    });
    assertEquals(asked, 2);
    assertEquals((await t.store.keysOf([ALICE])).get(ALICE), second.upload);
    const updates = await deviceListUpdatesAfter(t.kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.crossSigning]), [
      [1, [], true],
      [2, [1], true],
    ]);
  } finally {
    t.kv.close();
  }
});

Deno.test("uploads are checked: signatures, shape, a master key to sign with, device IDs", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    const other = await newKeyPair();
    // No master key stored and none in the upload.
    assertEquals(
      await errcodeOf(
        t.service.uploadSigningKeys(ALICE, { self_signing: alice.upload.self_signing }, t.noAuth),
      ),
      "M_MISSING_PARAM",
    );
    // Self-signing key signed by some other key.
    const badSelf = await other.sign(
      crossSigningKey(ALICE, "self_signing", alice.selfSigning),
      ALICE,
      `ed25519:${alice.master.publicKey}`,
    );
    assertEquals(
      await errcodeOf(
        t.service.uploadSigningKeys(
          ALICE,
          { master: alice.upload.master, self_signing: badSelf },
          t.noAuth,
        ),
      ),
      "M_INVALID_SIGNATURE",
    );
    // Unsigned user-signing key.
    const unsigned = crossSigningKey(ALICE, "user_signing", alice.userSigning);
    assertEquals(
      await errcodeOf(
        t.service.uploadSigningKeys(
          ALICE,
          { master: alice.upload.master, user_signing: unsigned },
          t.noAuth,
        ),
      ),
      "M_INVALID_SIGNATURE",
    );
    const shapes: [string, JsonObject][] = [
      ["someone else's", { ...alice.upload.master, user_id: BOB }],
      ["wrong usage", { ...alice.upload.master, usage: ["self_signing"] }],
      ["two usages", { ...alice.upload.master, usage: ["master", "master"] }],
      ["two keys", {
        ...alice.upload.master,
        keys: { ...(alice.upload.master.keys as JsonObject), "ed25519:x": "x" },
      }],
      ["padded key", {
        ...alice.upload.master,
        keys: { [`ed25519:${alice.master.publicKey}=`]: `${alice.master.publicKey}=` },
      }],
      ["key value differs", {
        ...alice.upload.master,
        keys: { [`ed25519:${alice.master.publicKey}`]: other.publicKey },
      }],
      ["curve25519", {
        ...alice.upload.master,
        keys: { [`curve25519:${alice.master.publicKey}`]: alice.master.publicKey },
      }],
    ];
    for (const [name, master] of shapes) {
      const code = await errcodeOf(t.service.uploadSigningKeys(ALICE, { master }, t.noAuth));
      assertEquals(code, "M_INVALID_PARAM", name);
    }
    assertEquals(
      await errcodeOf(t.service.uploadSigningKeys(ALICE, { master: "nope" }, t.noAuth)),
      "M_BAD_JSON",
    );
    // A public key equal to one of the user's device IDs.
    t.devices.set(ALICE, [{ deviceId: alice.master.publicKey }]);
    assertEquals(
      await errcodeOf(t.service.uploadSigningKeys(ALICE, alice.upload, t.noAuth)),
      "M_FORBIDDEN",
    );
    assertEquals((await t.store.keysOf([ALICE])).get(ALICE), {});
    assertEquals(await deviceListUpdatesAfter(t.kv, ALICE), []);
  } finally {
    t.kv.close();
  }
});

Deno.test("signing keys may be replaced alone; a new master key drops the old ones", async () => {
  const t = await setup();
  try {
    const first = await newCrossSigning(ALICE);
    await t.service.uploadSigningKeys(ALICE, first.upload, t.noAuth);
    const yes = () => Promise.resolve();
    // A new self-signing key signed by the stored master key.
    const next = await newKeyPair();
    const selfSigning = await first.master.sign(
      crossSigningKey(ALICE, "self_signing", next),
      ALICE,
    );
    await t.service.uploadSigningKeys(ALICE, { self_signing: selfSigning }, yes);
    assertEquals((await t.store.keysOf([ALICE])).get(ALICE), {
      ...first.upload,
      self_signing: selfSigning,
    });
    // A new master key alone: the old signing keys, signed by the old master, go.
    const second = await newCrossSigning(ALICE);
    await t.service.uploadSigningKeys(ALICE, { master: second.upload.master }, yes);
    assertEquals((await t.store.keysOf([ALICE])).get(ALICE), { master: second.upload.master });
    // The old self-signing key cannot come back under the new master key.
    assertEquals(
      await errcodeOf(t.service.uploadSigningKeys(ALICE, { self_signing: selfSigning }, yes)),
      "M_INVALID_SIGNATURE",
    );
  } finally {
    t.kv.close();
  }
});

Deno.test("signature uploads: own devices, own master key and others' master keys", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    const bob = await newCrossSigning(BOB);
    const phone = await t.addDevice(ALICE, "PHONE");
    await t.addDevice(BOB, "BOBDEV");
    await t.service.uploadSigningKeys(ALICE, alice.upload, t.noAuth);
    await t.service.uploadSigningKeys(BOB, bob.upload, t.noAuth);
    const aliceUpdates = (await deviceListUpdatesAfter(t.kv, ALICE)).length;
    const bobUpdates = (await deviceListUpdatesAfter(t.kv, BOB)).length;

    const deviceSigned = await alice.selfSigning.sign(phone.keys, ALICE);
    const masterSigned = await phone.pair.sign(alice.upload.master, ALICE, "ed25519:PHONE");
    const bobSigned = await alice.userSigning.sign(bob.upload.master, ALICE);
    const result = await t.service.uploadSignatures(ALICE, {
      [ALICE]: { PHONE: deviceSigned, [alice.master.publicKey]: masterSigned },
      [BOB]: { [bob.master.publicKey]: bobSigned },
    });
    assertEquals(result, { failures: {} });

    const stored = await t.store.signaturesOn(ALICE);
    assertEquals(
      stored.map((s) => [s.targetKeyId, s.signerUserId, s.signerKeyId]).sort(),
      [
        ["PHONE", ALICE, `ed25519:${alice.selfSigning.publicKey}`],
        [alice.master.publicKey, ALICE, "ed25519:PHONE"],
      ].sort(),
    );
    assertEquals(
      (await t.store.signaturesOn(BOB)).map((s) => [s.targetKeyId, s.signerUserId]),
      [[bob.master.publicKey, ALICE]],
    );
    // Alice's own device and master key changed in one update; Bob's list did not change.
    const updates = await deviceListUpdatesAfter(t.kv, ALICE, aliceUpdates);
    assertEquals(updates.map((u) => [u.deviceIds, u.crossSigning, u.prevIds]), [
      [["PHONE"], true, [aliceUpdates]],
    ]);
    assertEquals((await deviceListUpdatesAfter(t.kv, BOB)).length, bobUpdates);
    assertEquals(t.listChanged.at(-1)!.userIds, [ALICE]);
    // Bob's signature lands in its own commit (a later batch): only Alice's syncs hear of it.
    assertEquals(t.userNotified.map((n) => n.userId), [ALICE]);
    const notice = t.userNotified[0].versionstamp;
    assertEquals(await t.store.signatureNoticeTargets(ALICE, `s${"0".repeat(20)}`, `s${notice}`), [
      BOB,
    ]);
    assertEquals(await t.store.signatureNoticeTargets(BOB, `s${"0".repeat(20)}`, `s${notice}`), []);

    // The same upload again stores nothing new and tells nobody.
    const before = { changed: t.listChanged.length, notified: t.userNotified.length };
    assertEquals(
      await t.service.uploadSignatures(ALICE, {
        [ALICE]: { PHONE: deviceSigned, [alice.master.publicKey]: masterSigned },
        [BOB]: { [bob.master.publicKey]: bobSigned },
      }),
      { failures: {} },
    );
    assertEquals({ changed: t.listChanged.length, notified: t.userNotified.length }, before);
  } finally {
    t.kv.close();
  }
});

Deno.test("signature uploads report failures per key and keep the good ones", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    const bob = await newCrossSigning(BOB);
    const phone = await t.addDevice(ALICE, "PHONE");
    const laptop = await t.addDevice(ALICE, "LAPTOP");
    await t.service.uploadSigningKeys(ALICE, alice.upload, t.noAuth);
    await t.service.uploadSigningKeys(BOB, bob.upload, t.noAuth);
    const stranger = await newKeyPair();

    const result = await t.service.uploadSignatures(ALICE, {
      [ALICE]: {
        // Good.
        PHONE: await alice.selfSigning.sign(phone.keys, ALICE),
        // Signed by a key claiming to be the self-signing key.
        LAPTOP: await stranger.sign(
          laptop.keys,
          ALICE,
          `ed25519:${alice.selfSigning.publicKey}`,
        ),
        // No such device.
        NOPE: await alice.selfSigning.sign({ ...phone.keys, device_id: "NOPE" }, ALICE),
        // The master key signed by a device that does not exist.
        [alice.master.publicKey]: await stranger.sign(alice.upload.master, ALICE, "ed25519:GONE"),
      },
      [BOB]: {
        // Bob's master key, altered.
        [bob.master.publicKey]: await alice.userSigning.sign(
          { ...bob.upload.master, usage: ["master", "extra"] },
          ALICE,
        ),
      },
      [CAROL]: { WHATEVER: {} },
      "@dave:elsewhere.example": { KEY: {} },
    });
    const codes = Object.fromEntries(
      Object.entries(result.failures).map(([user, byKey]) => [
        user,
        Object.fromEntries(Object.entries(byKey).map(([k, f]) => [k, f.errcode])),
      ]),
    );
    assertEquals(codes, {
      [ALICE]: {
        LAPTOP: "M_INVALID_SIGNATURE",
        NOPE: "M_NOT_FOUND",
        [alice.master.publicKey]: "M_NOT_FOUND",
      },
      [BOB]: { [bob.master.publicKey]: "M_INVALID_PARAM" },
      [CAROL]: { WHATEVER: "M_NOT_FOUND" },
      "@dave:elsewhere.example": { KEY: "M_NOT_FOUND" },
    });
    for (const byKey of Object.values(result.failures)) {
      for (const failure of Object.values(byKey)) assert(failure.error.length > 0);
    }
    assertEquals(
      (await t.store.signaturesOn(ALICE)).map((s) => s.targetKeyId),
      ["PHONE"],
    );
    assertEquals(await t.store.signaturesOn(BOB), []);

    // Device keys altered but signed correctly: still not the stored keys.
    const altered = await alice.selfSigning.sign({ ...laptop.keys, algorithms: [] }, ALICE);
    const second = await t.service.uploadSignatures(ALICE, { [ALICE]: { LAPTOP: altered } });
    assertEquals(second.failures[ALICE].LAPTOP.errcode, "M_INVALID_PARAM");
  } finally {
    t.kv.close();
  }
});

Deno.test("signing without the needed cross-signing key is a per-key M_NOT_FOUND", async () => {
  const t = await setup();
  try {
    const bob = await newCrossSigning(BOB);
    await t.service.uploadSigningKeys(BOB, bob.upload, t.noAuth);
    const phone = await t.addDevice(ALICE, "PHONE");
    const somebody = await newKeyPair();
    const result = await t.service.uploadSignatures(ALICE, {
      [ALICE]: { PHONE: await somebody.sign(phone.keys, ALICE) },
      [BOB]: { [bob.master.publicKey]: await somebody.sign(bob.upload.master, ALICE) },
    });
    assertEquals(result.failures[ALICE].PHONE.errcode, "M_NOT_FOUND");
    assertEquals(result.failures[BOB][bob.master.publicKey].errcode, "M_NOT_FOUND");
  } finally {
    t.kv.close();
  }
});

Deno.test("queries show each signature to the right viewer", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    const bob = await newCrossSigning(BOB);
    const carol = await newCrossSigning(CAROL);
    const phone = await t.addDevice(ALICE, "PHONE", "Alice's phone");
    const bobDevice = await t.addDevice(BOB, "BOBDEV");
    await t.addDevice(CAROL, "CAROLDEV");
    for (const [user, keys] of [[ALICE, alice], [BOB, bob], [CAROL, carol]] as const) {
      await t.service.uploadSigningKeys(user, keys.upload, t.noAuth);
    }
    // Alice: signs her phone and Bob's master key. Bob: signs his master key with his device.
    // Carol: signs Bob's master key too.
    assertEquals(
      await t.service.uploadSignatures(ALICE, {
        [ALICE]: { PHONE: await alice.selfSigning.sign(phone.keys, ALICE) },
        [BOB]: { [bob.master.publicKey]: await alice.userSigning.sign(bob.upload.master, ALICE) },
      }),
      { failures: {} },
    );
    assertEquals(
      await t.service.uploadSignatures(BOB, {
        [BOB]: {
          [bob.master.publicKey]: await bobDevice.pair.sign(
            bob.upload.master,
            BOB,
            "ed25519:BOBDEV",
          ),
        },
      }),
      { failures: {} },
    );
    assertEquals(
      await t.service.uploadSignatures(CAROL, {
        [BOB]: { [bob.master.publicKey]: await carol.userSigning.sign(bob.upload.master, CAROL) },
      }),
      { failures: {} },
    );

    const query = { [ALICE]: [], [BOB]: [], "@zed:remote.example": [] };
    const signersOnBobMaster = (response: { master_keys: Record<string, JsonObject> }) =>
      Object.entries(response.master_keys[BOB].signatures as Record<string, JsonObject>)
        .flatMap(([user, keys]) => Object.keys(keys).map((k) => `${user} ${k}`)).sort();
    const aliceView = await t.service.queryKeys(ALICE, query, 10_000);
    const bobView = await t.service.queryKeys(BOB, query, 10_000);
    const carolView = await t.service.queryKeys(CAROL, query, 10_000);

    const bobDeviceSig = `${BOB} ed25519:BOBDEV`;
    assertEquals(signersOnBobMaster(aliceView), [
      `${ALICE} ed25519:${alice.userSigning.publicKey}`,
      bobDeviceSig,
    ]);
    assertEquals(signersOnBobMaster(bobView), [bobDeviceSig]);
    assertEquals(
      signersOnBobMaster(carolView),
      [
        `${CAROL} ed25519:${carol.userSigning.publicKey}`,
        bobDeviceSig,
      ].sort(),
    );

    // Device keys carry the self-signing signature for everyone, and the display name.
    for (const view of [aliceView, bobView, carolView]) {
      const device = view.device_keys[ALICE].PHONE;
      assertEquals(
        Object.keys((device.signatures as Record<string, JsonObject>)[ALICE]).sort(),
        ["ed25519:PHONE", `ed25519:${alice.selfSigning.publicKey}`].sort(),
      );
      assertEquals(device.unsigned, { device_display_name: "Alice's phone" });
      assertEquals(view.self_signing_keys[ALICE], alice.upload.self_signing);
      assertEquals(view.self_signing_keys[BOB], bob.upload.self_signing);
      assertEquals(view.failures, {
        "remote.example": {
          status: 503,
          message: "Querying keys on other servers is not supported yet",
        },
      });
    }
    assertEquals(bobView.device_keys[BOB].BOBDEV.unsigned, {});
    // User-signing keys go to their owner only.
    assertEquals(aliceView.user_signing_keys, { [ALICE]: alice.upload.user_signing });
    assertEquals(bobView.user_signing_keys, { [BOB]: bob.upload.user_signing });
    assertEquals(carolView.user_signing_keys, {});
    assertEquals(Object.keys(carolView.master_keys).sort(), [ALICE, BOB]);
  } finally {
    t.kv.close();
  }
});

Deno.test("queries skip deleted devices, unknown devices and stale signatures", async () => {
  const t = await setup();
  try {
    const alice = await newCrossSigning(ALICE);
    const phone = await t.addDevice(ALICE, "PHONE");
    const laptop = await t.addDevice(ALICE, "LAPTOP");
    await t.service.uploadSigningKeys(ALICE, alice.upload, t.noAuth);
    await t.service.uploadSignatures(ALICE, {
      [ALICE]: {
        PHONE: await alice.selfSigning.sign(phone.keys, ALICE),
        LAPTOP: await alice.selfSigning.sign(laptop.keys, ALICE),
        [alice.master.publicKey]: await laptop.pair.sign(
          alice.upload.master,
          ALICE,
          "ed25519:LAPTOP",
        ),
      },
    });
    // The laptop is deleted: accounts forget it first, its keys may linger.
    t.devices.set(ALICE, [{ deviceId: "PHONE" }]);
    await t.service.devicesRemoved(ALICE, ["LAPTOP"]);
    let view = await t.service.queryKeys(ALICE, { [ALICE]: [] }, 0);
    assertEquals(Object.keys(view.device_keys[ALICE]), ["PHONE"]);
    assertEquals(view.master_keys[ALICE].signatures, undefined);
    assertEquals(
      (await t.store.signaturesOn(ALICE)).map((s) => s.targetKeyId),
      ["PHONE"],
    );
    view = await t.service.queryKeys(ALICE, { [ALICE]: ["PHONE", "NOSUCH"] }, 0);
    assertEquals(Object.keys(view.device_keys[ALICE]), ["PHONE"]);

    // A new self-signing key: the phone's signature by the old one is gone.
    const next = await newKeyPair();
    const selfSigning = await alice.master.sign(
      crossSigningKey(ALICE, "self_signing", next),
      ALICE,
    );
    await t.service.uploadSigningKeys(
      ALICE,
      { self_signing: selfSigning },
      () => Promise.resolve(),
    );
    view = await t.service.queryKeys(ALICE, { [ALICE]: [] }, 0);
    assertEquals(
      Object.keys((view.device_keys[ALICE].PHONE.signatures as Record<string, JsonObject>)[ALICE]),
      ["ed25519:PHONE"],
    );
    assertEquals(await t.store.signaturesOn(ALICE), []);
  } finally {
    t.kv.close();
  }
});

Deno.test("queries and signature uploads read only the signatures that matter, not every verifier's", async () => {
  const t = await setup();
  try {
    const bobDevice = await t.addDevice(BOB, "BOBDEV");
    const bob = await newCrossSigning(BOB);
    await t.service.uploadSigningKeys(BOB, bob.upload, t.noAuth);
    // Bob's device is cross-signed, and 30 users have verified bob.
    const bobSsk = `ed25519:${bob.selfSigning.publicKey}`;
    const signedDevice = await bob.selfSigning.sign(bobDevice.keys, BOB, bobSsk);
    assertEquals(await t.service.uploadSignatures(BOB, { [BOB]: { BOBDEV: signedDevice } }), {
      failures: {},
    });
    const verifiers: string[] = [];
    for (let i = 0; i < 30; i++) {
      const id = `@v${i}:example.org`;
      const cross = await newCrossSigning(id);
      await t.service.uploadSigningKeys(id, cross.upload, t.noAuth);
      const signed = await cross.userSigning.sign(bob.upload.master, id);
      const res = await t.service.uploadSignatures(id, {
        [BOB]: { [bob.master.publicKey]: signed },
      });
      assertEquals(res.failures, {});
      verifiers.push(id);
    }
    // The same service over a KV that counts the entries each call reads.
    let read = 0;
    const counting = new Proxy(t.kv, {
      get(target, name) {
        if (name === "getMany") {
          return async (keys: Deno.KvKey[]) => {
            const entries = await target.getMany(keys);
            read += entries.filter((e) => e.value !== null).length;
            return entries;
          };
        }
        if (name === "list") {
          return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
            const entries = target.list(selector, options);
            return (async function* () {
              for await (const entry of entries) {
                read++;
                yield entry;
              }
            })();
          };
        }
        const value = Reflect.get(target, name, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const service = new CrossSigningService({
      store: new KvCrossSigningStore(counting),
      deviceKeys: t.deviceKeys,
      devicesOf: (userId) => Promise.resolve(t.devices.get(userId) ?? []),
      deviceListsChanged: () => Promise.resolve(),
      notifyUser: () => {},
      serverName: SERVER,
    });
    const answer = await service.queryKeys(verifiers[0], { [BOB]: [] }, 0);
    assertEquals(Object.keys(answer.master_keys[BOB].signatures as JsonObject), [verifiers[0]]);
    assertEquals(
      Object.keys((answer.device_keys[BOB].BOBDEV.signatures as JsonObject)[BOB] as JsonObject)
        .sort(),
      [bobSsk, "ed25519:BOBDEV"].sort(),
    );
    // bob's and v0's cross-signing keys, bob's device signature and v0's signature on bob.
    assert(read <= 10, `a query read ${read} entries`);
    // Re-uploading a stored signature checks against the signer's own signatures only.
    read = 0;
    // Signed by a fresh key, not v1's user-signing key: refused after the reads.
    const forged = await (await newKeyPair()).sign(bob.upload.master, verifiers[1]);
    const again = await service.uploadSignatures(verifiers[1], {
      [BOB]: { [bob.master.publicKey]: forged },
    });
    assertEquals(again.failures[BOB]?.[bob.master.publicKey]?.errcode, "M_INVALID_SIGNATURE");
    assert(read <= 10, `a signature upload read ${read} entries`);
  } finally {
    t.kv.close();
  }
});
