/**
 * Signatures of other servers' users' master keys, with real Ed25519 keys over a fake remote
 * key querier: what a local user may sign (the remote user's current master key, with their
 * own user-signing key, nothing else), when and how often the remote master key is asked for,
 * each refusal's failure (nothing stored), and what /keys/query shows of the signature (to the
 * signer only, on the master key answered now, by their current user-signing key).
 */
import { assert, assertEquals } from "../../assert.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { CrossSigningService } from "../../../domain/e2ee/cross_signing_service.ts";
import type { RemoteKeyQuerier, RemoteKeyQueryResult } from "../../../domain/e2ee/key_query.ts";
import { fetchRemoteMasterKeys } from "../../../domain/e2ee/signature_upload.ts";
import { KvCrossSigningStore } from "../../../kv/cross_signing_store.ts";
import {
  crossSigningKey,
  MemoryDeviceKeys,
  newCrossSigning,
  newDeviceKeys,
  newKeyPair,
  type TestCrossSigning,
} from "./cross_signing_fixtures.ts";

const SERVER = "example.org";
const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const DAVE = "@dave:remote.example";
const ERIN = "@erin:other.example";

/** A querier answering from `answers` per user (what their server would), logging each call. */
class FakeQuerier implements RemoteKeyQuerier {
  readonly calls: { server: string; users: string[] }[] = [];
  readonly masters = new Map<string, JsonObject>();
  /** Servers whose query throws, or never answers. */
  readonly failing = new Set<string>();
  readonly hanging = new Set<string>();

  query(server: string, deviceKeys: Record<string, string[]>): Promise<RemoteKeyQueryResult> {
    this.calls.push({ server, users: Object.keys(deviceKeys) });
    if (this.failing.has(server)) return Promise.reject(new Error(`${server} is down`));
    if (this.hanging.has(server)) return new Promise(() => {});
    const result: RemoteKeyQueryResult = { device_keys: {}, master_keys: {} };
    for (const userId of Object.keys(deviceKeys)) {
      result.device_keys![userId] = {};
      const master = this.masters.get(userId);
      if (master !== undefined) result.master_keys![userId] = structuredClone(master);
    }
    return Promise.resolve(result);
  }
}

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const store = new KvCrossSigningStore(kv);
  const deviceKeys = new MemoryDeviceKeys();
  const remote = new FakeQuerier();
  const listChanged: string[][] = [];
  const userNotified: string[] = [];
  const service = new CrossSigningService({
    store,
    deviceKeys,
    devicesOf: () => Promise.resolve([]),
    deviceListsChanged: (userIds) => {
      listChanged.push(userIds);
      return Promise.resolve();
    },
    notifyUser: (userId) => userNotified.push(userId),
    serverName: SERVER,
    remote,
    remoteMasterTimeoutMs: 50,
  });
  const alice = await newCrossSigning(ALICE);
  await service.uploadSigningKeys(ALICE, alice.upload, () => Promise.resolve());
  const dave = await newCrossSigning(DAVE);
  remote.masters.set(DAVE, dave.upload.master);
  listChanged.length = 0;
  return { kv, store, remote, service, alice, dave, listChanged, userNotified };
}

/** `signer`'s user-signing signature on `target`'s master key, as an upload body. */
async function signedMaster(
  signer: string,
  signerKeys: TestCrossSigning,
  target: string,
  of: TestCrossSigning,
) {
  return {
    [target]: {
      [of.master.publicKey]: await signerKeys.userSigning.sign(of.upload.master, signer),
    },
  };
}

/** The signature by `signer`'s `keyId` on `userId`'s master key in `signer`'s query. */
async function shownSignature(
  service: CrossSigningService,
  requester: string,
  userId: string,
  signer: string,
  keyId: string,
): Promise<string | undefined> {
  const response = await service.queryKeys(requester, { [userId]: [] }, 1_000);
  const signatures = response.master_keys[userId]?.signatures as
    | Record<string, Record<string, string>>
    | undefined;
  return signatures?.[signer]?.[keyId];
}

Deno.test("a remote user's master key signed with the signer's user-signing key is stored and noticed to the signer alone", async () => {
  const t = await setup();
  try {
    const body = await signedMaster(ALICE, t.alice, DAVE, t.dave);
    assertEquals(await t.service.uploadSignatures(ALICE, body), { failures: {} });
    // Asked of dave's server once, for dave only.
    assertEquals(t.remote.calls, [{ server: "remote.example", users: [DAVE] }]);
    const stored = await t.store.signaturesBy(DAVE, [ALICE], t.dave.master.publicKey);
    const uskId = `ed25519:${t.alice.userSigning.publicKey}`;
    assertEquals(stored.map((s) => [s.targetKeyId, s.signerUserId, s.signerKeyId]), [
      [t.dave.master.publicKey, ALICE, uskId],
    ]);
    // The signer's syncs hear of it (a notice naming dave); no device list changed.
    assertEquals(t.userNotified, [ALICE]);
    assertEquals(t.listChanged, []);
    assertEquals(
      await t.store.signatureNoticeTargets(ALICE, `s${"0".repeat(20)}`, `s${"f".repeat(20)}`),
      [
        DAVE,
      ],
    );
    // Uploading it again writes nothing.
    assertEquals(await t.service.uploadSignatures(ALICE, body), { failures: {} });
    assertEquals(t.userNotified, [ALICE]);

    // Shown to alice on dave's master key, not to bob.
    assertEquals(
      await shownSignature(t.service, ALICE, DAVE, ALICE, uskId),
      (body[DAVE][t.dave.master.publicKey].signatures as Record<string, Record<string, string>>)[
        ALICE
      ][uskId],
    );
    assertEquals(await shownSignature(t.service, BOB, DAVE, ALICE, uskId), undefined);
  } finally {
    t.kv.close();
  }
});

Deno.test("about remote users only their current master key signed by the user-signing key is taken; each refusal stores nothing", async () => {
  const t = await setup();
  try {
    const device = await newDeviceKeys(DAVE, "DAVEDEV");
    const aliceDevice = await newKeyPair();
    const usk = `ed25519:${t.alice.userSigning.publicKey}`;
    const daveMaster = t.dave.master.publicKey;
    const failures = async (body: Record<string, Record<string, unknown>>) =>
      (await t.service.uploadSignatures(ALICE, body)).failures;
    const errcode = async (body: Record<string, Record<string, unknown>>, keyId: string) =>
      (await failures(body))[DAVE]?.[keyId]?.errcode;

    // Dave's device: only his own self-signing key signs it, on his server.
    assertEquals(
      await errcode({
        [DAVE]: { DAVEDEV: await t.alice.userSigning.sign(device.keys, ALICE) },
      }, "DAVEDEV"),
      "M_NOT_FOUND",
    );
    // His master key signed by one of alice's devices instead of her user-signing key.
    assertEquals(
      await errcode({
        [DAVE]: {
          [daveMaster]: await aliceDevice.sign(t.dave.upload.master, ALICE, "ed25519:ADEV"),
        },
      }, daveMaster),
      "M_INVALID_SIGNATURE",
    );
    // A signature under her user-signing key's ID made with another key.
    const forger = await newKeyPair();
    assertEquals(
      await errcode({
        [DAVE]: { [daveMaster]: await forger.sign(t.dave.upload.master, ALICE, usk) },
      }, daveMaster),
      "M_INVALID_SIGNATURE",
    );
    // A master key other than the one his server answers (content, or a key it replaced).
    assertEquals(
      await errcode({
        [DAVE]: {
          [daveMaster]: await t.alice.userSigning.sign(
            { ...t.dave.upload.master, extra: 1 },
            ALICE,
          ),
        },
      }, daveMaster),
      "M_INVALID_PARAM",
    );
    const older = await newCrossSigning(DAVE);
    assertEquals(
      await errcode(await signedMaster(ALICE, t.alice, DAVE, older), older.master.publicKey),
      "M_NOT_FOUND",
    );
    // His server down, or answering no master key, or one that is not his.
    const body = await signedMaster(ALICE, t.alice, DAVE, t.dave);
    t.remote.failing.add("remote.example");
    const down = (await failures(body))[DAVE][daveMaster];
    assertEquals(down.errcode, "M_NOT_FOUND");
    assert(down.error.includes("remote.example is down"), down.error);
    t.remote.failing.clear();
    t.remote.hanging.add("remote.example");
    const late = (await failures(body))[DAVE][daveMaster];
    assertEquals(late.errcode, "M_NOT_FOUND");
    assert(late.error.includes("did not answer in time"), late.error);
    t.remote.hanging.clear();
    t.remote.masters.delete(DAVE);
    assertEquals(await errcode(body, daveMaster), "M_NOT_FOUND");
    t.remote.masters.set(DAVE, { ...t.dave.upload.master, user_id: ERIN });
    assertEquals(await errcode(body, daveMaster), "M_NOT_FOUND");

    assertEquals(await t.store.signaturesOn(DAVE), []);
    assertEquals(t.userNotified, []);
  } finally {
    t.kv.close();
  }
});

Deno.test("remote master keys are asked for once per server and upload, and not without a user-signing key", async () => {
  const t = await setup();
  try {
    // 50 users on one server and 45 on another: three 40-user batches, two queries.
    const users: [string, TestCrossSigning][] = [];
    for (let i = 0; i < 95; i++) {
      const userId = i < 50 ? `@u${i}:remote.example` : `@u${i}:other.example`;
      const keys = await newCrossSigning(userId);
      t.remote.masters.set(userId, keys.upload.master);
      users.push([userId, keys]);
    }
    const body: Record<string, Record<string, unknown>> = {};
    for (const [userId, keys] of users) {
      Object.assign(body, await signedMaster(ALICE, t.alice, userId, keys));
    }
    assertEquals(await t.service.uploadSignatures(ALICE, body), { failures: {} });
    assertEquals(t.remote.calls.map((c) => [c.server, c.users.length]).sort(), [
      ["other.example", 45],
      ["remote.example", 50],
    ]);
    for (const [userId, keys] of users.slice(0, 3)) {
      assertEquals((await t.store.signaturesBy(userId, [ALICE], keys.master.publicKey)).length, 1);
    }

    // Bob has no user-signing key: nothing to check a signature with, so no server is asked.
    const bob = await newCrossSigning(BOB);
    await t.service.uploadSigningKeys(
      BOB,
      { master: bob.upload.master, self_signing: bob.upload.self_signing },
      () => Promise.resolve(),
    );
    t.remote.calls.length = 0;
    const refused = await t.service.uploadSignatures(
      BOB,
      await signedMaster(BOB, bob, DAVE, t.dave),
    );
    assertEquals(refused.failures[DAVE][t.dave.master.publicKey].errcode, "M_NOT_FOUND");
    assertEquals(t.remote.calls, []);
  } finally {
    t.kv.close();
  }
});

Deno.test("a query shows the signer's signature on the remote master key answered now, by their current user-signing key", async () => {
  const t = await setup();
  try {
    const usk = `ed25519:${t.alice.userSigning.publicKey}`;
    assertEquals(
      await t.service.uploadSignatures(ALICE, await signedMaster(ALICE, t.alice, DAVE, t.dave)),
      { failures: {} },
    );
    assert(await shownSignature(t.service, ALICE, DAVE, ALICE, usk));

    // Dave's server replaces his master key: the signature was on the old one.
    const next = await newCrossSigning(DAVE);
    t.remote.masters.set(DAVE, next.upload.master);
    assertEquals(await shownSignature(t.service, ALICE, DAVE, ALICE, usk), undefined);
    t.remote.masters.set(DAVE, t.dave.upload.master);
    assert(await shownSignature(t.service, ALICE, DAVE, ALICE, usk));

    // What dave's server claims under the names of this server's users is not shown; its
    // other users' signatures are.
    const forged = await newKeyPair();
    t.remote.masters.set(DAVE, {
      ...t.dave.upload.master,
      signatures: {
        [ALICE]: { [`ed25519:${forged.publicKey}`]: "forged" },
        [BOB]: { [`ed25519:${forged.publicKey}`]: "forged" },
        [DAVE]: { "ed25519:DAVEDEV": "by dave's device" },
      },
    });
    const response = await t.service.queryKeys(ALICE, { [DAVE]: [] }, 1_000);
    const signatures = response.master_keys[DAVE].signatures as Record<
      string,
      Record<string, string>
    >;
    assertEquals(Object.keys(signatures).sort(), [ALICE, DAVE]);
    assertEquals(Object.keys(signatures[ALICE]), [usk]);
    assertEquals(signatures[DAVE], { "ed25519:DAVEDEV": "by dave's device" });
    // Bob sees none of alice's, not even what dave's server put there.
    const bobs = await t.service.queryKeys(BOB, { [DAVE]: [] }, 1_000);
    assertEquals(Object.keys(bobs.master_keys[DAVE].signatures as JsonObject), [DAVE]);

    // Alice replaces her user-signing key: her signature by the old one is no longer shown.
    const replacement = await newKeyPair();
    await t.service.uploadSigningKeys(
      ALICE,
      {
        user_signing: await t.alice.master.sign(
          crossSigningKey(ALICE, "user_signing", replacement),
          ALICE,
        ),
      },
      () => Promise.resolve(),
    );
    t.remote.masters.set(DAVE, t.dave.upload.master);
    assertEquals(await shownSignature(t.service, ALICE, DAVE, ALICE, usk), undefined);
  } finally {
    t.kv.close();
  }
});

Deno.test("fetchRemoteMasterKeys answers every user: the key, or why there is none", async () => {
  const remote = new FakeQuerier();
  const dave = await newCrossSigning(DAVE);
  remote.masters.set(DAVE, dave.upload.master);
  remote.failing.add("other.example");
  const out = await fetchRemoteMasterKeys(remote, [DAVE, "@nokey:remote.example", ERIN], 50);
  assertEquals(out.get(DAVE), { key: dave.upload.master });
  assertEquals(out.get("@nokey:remote.example"), {
    failure: { errcode: "M_NOT_FOUND", error: "The user has no master key" },
  });
  const erin = out.get(ERIN)!;
  assert("failure" in erin && erin.failure.error.includes("other.example is down"));
  // Without a querier, nothing can be fetched.
  const none = await fetchRemoteMasterKeys(undefined, [DAVE], 50);
  assert("failure" in none.get(DAVE)!);
});

Deno.test("fetchRemoteMasterKeys keeps one deadline for all servers: a server whose turn comes after it is not asked", async () => {
  // A clock each query moves on by 600 of the 1,000 ms allowed: the first server is asked with
  // 1,000 left, the second with 400, the third after the deadline.
  let clock = 0;
  const remote = new FakeQuerier();
  const asked: number[] = [];
  const users = ["@u:one.example", "@u:two.example", "@u:three.example"];
  for (const userId of users) {
    remote.masters.set(userId, (await newCrossSigning(userId)).upload.master);
  }
  const querier: RemoteKeyQuerier = {
    query: (server, deviceKeys, timeoutMs) => {
      asked.push(timeoutMs);
      clock += 600;
      return remote.query(server, deviceKeys);
    },
  };
  const out = await fetchRemoteMasterKeys(querier, users, 1_000, () => clock);
  assertEquals(asked, [1_000, 400]);
  assert("key" in out.get(users[0])! && "key" in out.get(users[1])!);
  const late = out.get(users[2])!;
  assert(
    "failure" in late && late.failure.error.includes("not asked in time"),
    JSON.stringify(late),
  );
});
