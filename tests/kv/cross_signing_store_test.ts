/**
 * The KV cross-signing store: key changes commit with chained device-list updates, stale
 * signatures are swept even past one commit's budget, signature writes refuse to land on keys
 * that changed, and signature notices are read by window.
 */
import { assertEquals } from "../assert.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { CrossSigningKeyChange } from "../../domain/ports/cross_signing_store.ts";
import { KvCrossSigningStore } from "../../kv/cross_signing_store.ts";
import { deviceListChangesBetween, deviceListUpdatesAfter } from "../../kv/device_list_log.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import { syncToken } from "../../kv/stream_tokens.ts";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const ZERO = syncToken("0".repeat(20));

function key(userId: string, usage: string, publicKey: string): JsonObject {
  return { user_id: userId, usage: [usage], keys: { [`ed25519:${publicKey}`]: publicKey } };
}

function put(master: string, extra: Partial<CrossSigningKeyChange> = {}): CrossSigningKeyChange {
  return {
    put: { master: key(ALICE, "master", master) },
    remove: [],
    staleSignatures: { targetKeyIds: [], ownSignerKeyIds: [] },
    ...extra,
  };
}

Deno.test("concurrent key changes of one user chain their device-list updates", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvCrossSigningStore(kv);
    const stamps = await Promise.all(
      ["a", "b", "c"].map((k) => store.updateKeys(ALICE, () => Promise.resolve(put(k)))),
    );
    const updates = await deviceListUpdatesAfter(kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.crossSigning]), [
      [1, [], true],
      [2, [1], true],
      [3, [2], true],
    ]);
    const last = stamps.sort().at(-1)!;
    assertEquals([...await deviceListChangesBetween(kv, undefined, syncToken(last))], [ALICE]);
    // A plan returning null writes nothing.
    assertEquals(await store.updateKeys(ALICE, () => Promise.resolve(null)), null);
    assertEquals((await deviceListUpdatesAfter(kv, ALICE)).length, 3);
  } finally {
    kv.close();
  }
});

Deno.test("a new master key sweeps every signature on the old one, past one commit", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvCrossSigningStore(kv);
    await store.updateKeys(ALICE, () => Promise.resolve(put("old")));
    // 600 users signed the old master key; one signature is on a device and stays.
    for (let i = 0; i < 600; i += 100) {
      const op = kv.atomic();
      for (let j = i; j < i + 100; j++) {
        op.set(e2eeKeys.signature(ALICE, "old", `@u${j}:example.org`, "ed25519:usk"), "sig");
      }
      await op.commit();
    }
    await kv.set(e2eeKeys.signature(ALICE, "DEVICE", ALICE, "ed25519:ssk"), "sig");
    await store.updateKeys(
      ALICE,
      () =>
        Promise.resolve(
          put("new", { staleSignatures: { targetKeyIds: ["old"], ownSignerKeyIds: [] } }),
        ),
    );
    const left = await store.signaturesOn(ALICE);
    assertEquals(left.map((s) => [s.targetKeyId, s.signerKeyId]), [["DEVICE", "ed25519:ssk"]]);
    // Replacing the self-signing key drops the device signatures it made.
    await store.updateKeys(ALICE, () =>
      Promise.resolve({
        put: { self_signing: key(ALICE, "self_signing", "ssk2") },
        remove: [],
        staleSignatures: { targetKeyIds: [], ownSignerKeyIds: ["ed25519:ssk"] },
      }));
    assertEquals(await store.signaturesOn(ALICE), []);
  } finally {
    kv.close();
  }
});

Deno.test("signature writes refuse keys that changed, and notices read by window", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvCrossSigningStore(kv);
    await store.updateKeys(ALICE, () => Promise.resolve(put("m1")));
    const write = {
      signerUserId: ALICE,
      signatures: [{
        targetUserId: BOB,
        targetKeyId: "bobmaster",
        signerUserId: ALICE,
        signerKeyId: "ed25519:usk",
        signature: "sig",
      }],
      expected: [{ userId: ALICE, usage: "master" as const, publicKey: "m0" }],
      signerDeviceIds: [],
      signerCrossSigning: false,
      noticeTargets: [BOB],
    };
    assertEquals(await store.addSignatures(write), "stale");
    assertEquals(await store.signaturesOn(BOB), []);
    const missing = {
      ...write,
      expected: [{ userId: BOB, usage: "master" as const, publicKey: null }],
    };
    const first = await store.addSignatures(missing);
    const second = await store.addSignatures({
      ...missing,
      expected: [{ userId: ALICE, usage: "master" as const, publicKey: "m1" }],
      noticeTargets: ["@carol:example.org"],
    });
    assertEquals((await store.signaturesOn(BOB)).length, 1);
    // No device-list update for anyone: only notices.
    assertEquals((await deviceListUpdatesAfter(kv, ALICE)).length, 1);
    assertEquals((await deviceListUpdatesAfter(kv, BOB)).length, 0);
    assertEquals(await store.signatureNoticeTargets(ALICE, ZERO, syncToken(first)), [BOB]);
    assertEquals(
      await store.signatureNoticeTargets(ALICE, syncToken(first), syncToken(second)),
      ["@carol:example.org"],
    );
    assertEquals(
      (await store.signatureNoticeTargets(ALICE, ZERO, syncToken(second))).sort(),
      [BOB, "@carol:example.org"],
    );
    assertEquals(await store.signatureNoticeTargets(BOB, ZERO, syncToken(second)), []);
  } finally {
    kv.close();
  }
});

Deno.test("removing devices drops signatures on them and theirs on the master key", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvCrossSigningStore(kv);
    await store.updateKeys(ALICE, () => Promise.resolve(put("m1")));
    await kv.set(e2eeKeys.signature(ALICE, "PHONE", ALICE, "ed25519:ssk"), "s1");
    await kv.set(e2eeKeys.signature(ALICE, "m1", ALICE, "ed25519:PHONE"), "s2");
    await kv.set(e2eeKeys.signature(ALICE, "LAPTOP", ALICE, "ed25519:ssk"), "s3");
    await kv.set(e2eeKeys.signature(ALICE, "m1", BOB, "ed25519:usk"), "s4");
    await store.removeDeviceSignatures(ALICE, ["PHONE"]);
    assertEquals((await store.signaturesOn(ALICE)).map((s) => s.signature).sort(), ["s3", "s4"]);
  } finally {
    kv.close();
  }
});

Deno.test("signaturesBy reads the owner's signatures on every key and others' on the master", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvCrossSigningStore(kv);
    const carol = "@carol:example.org";
    // Key IDs sorting before and after the master key "Mkey", and one extending it.
    const stored: [targetKeyId: string, signer: string][] = [
      ["AAA", ALICE],
      ["Mkey", ALICE],
      ["Mkey", BOB],
      ["Mkey", carol],
      ["MkeyX", ALICE],
      ["ZZZ", ALICE],
      ["OLD", BOB],
    ];
    await store.addSignatures({
      signerUserId: ALICE,
      signatures: stored.map(([targetKeyId, signer]) => ({
        targetUserId: ALICE,
        targetKeyId,
        signerUserId: signer,
        signerKeyId: `ed25519:${signer}`,
        signature: `${targetKeyId} by ${signer}`,
      })),
      expected: [],
      signerDeviceIds: [],
      signerCrossSigning: false,
      noticeTargets: [],
    });
    const by = async (signers: string[], master: string | null) =>
      (await store.signaturesBy(ALICE, signers, master)).map((s) => s.signature).sort();
    assertEquals(await by([ALICE, BOB], "Mkey"), [
      "AAA by @alice:example.org",
      "Mkey by @alice:example.org",
      "Mkey by @bob:example.org",
      "MkeyX by @alice:example.org",
      "ZZZ by @alice:example.org",
    ]);
    assertEquals(await by([carol], "Mkey"), ["Mkey by @carol:example.org"]);
    assertEquals(await by([BOB, carol], null), []);
    assertEquals(await by([ALICE], null), [
      "AAA by @alice:example.org",
      "Mkey by @alice:example.org",
      "MkeyX by @alice:example.org",
      "ZZZ by @alice:example.org",
    ]);
  } finally {
    kv.close();
  }
});
