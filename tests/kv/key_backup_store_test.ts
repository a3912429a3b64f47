/**
 * The KV key backup store: versions (numbers never reused, current = newest live), exact counts
 * and etags at every level, stale-version refusal, chunked uploads, concurrent writers from
 * separate store instances (as separate processes would be), and deletion hiding a version in
 * one commit before its keys are purged.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvKeyBackupStore } from "../../kv/key_backup_store.ts";
import type { BackedUpKey } from "../../domain/ports/key_backup_store.ts";
import { e2eeKeys } from "../../kv/schema.ts";

const ALICE = "@alice:example.org";
const ALG = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM_A = "!a:example.org";
const ROOM_B = "!b:example.org";

function key(roomId: string, sessionId: string, overrides: Partial<BackedUpKey> = {}): BackedUpKey {
  return {
    roomId,
    sessionId,
    firstMessageIndex: 0,
    forwardedCount: 0,
    isVerified: false,
    sessionData: { ciphertext: `ct-${sessionId}`, ephemeral: "eph", mac: "mac" },
    ...overrides,
  };
}

async function withStore(fn: (store: KvKeyBackupStore, kv: Deno.Kv) => Promise<void>) {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(new KvKeyBackupStore(kv), kv);
  } finally {
    kv.close();
  }
}

async function countUnder(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

function ok(result: Awaited<ReturnType<KvKeyBackupStore["putKeys"]>>) {
  assertEquals(result.kind, "ok");
  if (result.kind !== "ok") throw new Error("unreachable");
  return result.state;
}

Deno.test("versions: numbered from 1, current is the newest live, never reused after delete", async () => {
  await withStore(async (store) => {
    assertEquals(await store.currentVersion(ALICE), null);
    assertEquals(await store.createVersion(ALICE, ALG, { public_key: "k1" }), 1);
    assertEquals(await store.createVersion(ALICE, ALG, { public_key: "k2" }), 2);
    assertEquals((await store.currentVersion(ALICE))?.version, 2);
    assertEquals(await store.version(ALICE, 1), {
      version: 1,
      algorithm: ALG,
      authData: { public_key: "k1" },
      count: 0,
      etag: "0",
    });
    assert(await store.deleteVersion(ALICE, 2));
    assertEquals((await store.currentVersion(ALICE))?.version, 1, "falls back to version 1");
    assertEquals(await store.version(ALICE, 2), null);
    assert(await store.deleteVersion(ALICE, 2), "deleting again succeeds");
    assertEquals(await store.deleteVersion(ALICE, 3), false, "never existed");
    assertEquals(await store.createVersion(ALICE, ALG, { public_key: "k3" }), 3);
    assert(await store.deleteVersion(ALICE, 1));
    assert(await store.deleteVersion(ALICE, 3));
    assertEquals(await store.currentVersion(ALICE), null);
    assertEquals(await store.createVersion(ALICE, ALG, { public_key: "k4" }), 4);
    assertEquals(await store.currentVersion("@bob:example.org"), null, "per user");
  });
});

Deno.test("updateVersion replaces auth_data only when the algorithm matches", async () => {
  await withStore(async (store) => {
    await store.createVersion(ALICE, ALG, { public_key: "k1" });
    ok(await store.putKeys(ALICE, 1, [key(ROOM_A, "s1")]));
    assertEquals(
      await store.updateVersion(ALICE, 1, "other.alg", { public_key: "x" }),
      "algorithm_mismatch",
    );
    assertEquals(await store.updateVersion(ALICE, 1, ALG, { public_key: "k1b" }), "updated");
    assertEquals(await store.updateVersion(ALICE, 9, ALG, { public_key: "k" }), "not_found");
    const info = await store.version(ALICE, 1);
    assertEquals(info, {
      version: 1,
      algorithm: ALG,
      authData: { public_key: "k1b" },
      count: 1,
      etag: "1",
    });
  });
});

Deno.test("etag and count change with the keys, and only then", async () => {
  await withStore(async (store) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const first = ok(
      await store.putKeys(ALICE, 1, [
        key(ROOM_A, "s1", { firstMessageIndex: 5, forwardedCount: 2 }),
        key(ROOM_A, "s2"),
        key(ROOM_B, "s3"),
      ]),
    );
    assertEquals(first.count, 3);
    // Repeating the upload, or offering worse keys, leaves everything as it was.
    assertEquals(ok(await store.putKeys(ALICE, 1, [key(ROOM_A, "s2")])), first);
    const worse = [
      key(ROOM_A, "s1", { firstMessageIndex: 6, forwardedCount: 0, sessionData: { w: 1 } }),
      key(ROOM_A, "s1", { firstMessageIndex: 5, forwardedCount: 3, sessionData: { w: 2 } }),
    ];
    for (const k of worse) assertEquals(ok(await store.putKeys(ALICE, 1, [k])), first);
    assertEquals(
      (await store.key(ALICE, 1, ROOM_A, "s1") as { key: BackedUpKey }).key.sessionData,
      {
        ciphertext: "ct-s1",
        ephemeral: "eph",
        mac: "mac",
      },
    );
    // A better key replaces: same count, new etag.
    const better = ok(
      await store.putKeys(ALICE, 1, [
        key(ROOM_A, "s1", { firstMessageIndex: 5, forwardedCount: 1 }),
      ]),
    );
    assertEquals(better.count, 3);
    assert(better.etag !== first.etag);
    // Verified beats unverified even with a worse index; unverified never replaces verified.
    const verified = ok(
      await store.putKeys(ALICE, 1, [
        key(ROOM_A, "s1", { isVerified: true, firstMessageIndex: 9 }),
      ]),
    );
    assert(verified.etag !== better.etag);
    assertEquals(
      ok(await store.putKeys(ALICE, 1, [key(ROOM_A, "s1", { firstMessageIndex: 0 })])),
      verified,
    );
    const stored = await store.key(ALICE, 1, ROOM_A, "s1");
    assertEquals(stored.version && stored.key?.firstMessageIndex, 9);
    assertEquals((await store.version(ALICE, 1))?.etag, verified.etag);

    // Deleting a missing session changes nothing; deleting a present one counts down.
    assertEquals(await store.deleteKeys(ALICE, 1, ROOM_A, "nope"), verified);
    const afterSession = await store.deleteKeys(ALICE, 1, ROOM_A, "s2");
    assertEquals(afterSession?.count, 2);
    assert(afterSession?.etag !== verified.etag);
    const afterRoom = await store.deleteKeys(ALICE, 1, ROOM_B);
    assertEquals(afterRoom?.count, 1);
    assertEquals(await store.deleteKeys(ALICE, 1, ROOM_B), afterRoom, "empty room: no change");
    const afterAll = await store.deleteKeys(ALICE, 1);
    assertEquals(afterAll?.count, 0);
    assertEquals(await store.keys(ALICE, 1), []);
    assertEquals((await store.version(ALICE, 1))?.count, 0);
  });
});

Deno.test("writes to a stale version are refused with the current one; unknown is not_found", async () => {
  await withStore(async (store) => {
    assertEquals(await store.putKeys(ALICE, 1, [key(ROOM_A, "s")]), { kind: "not_found" });
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    assertEquals(await store.putKeys(ALICE, 1, [key(ROOM_A, "s")]), {
      kind: "wrong_version",
      currentVersion: 2,
    });
    assertEquals(await store.putKeys(ALICE, 3, [key(ROOM_A, "s")]), { kind: "not_found" });
    assertEquals(await store.keys(ALICE, 1), [], "nothing landed in version 1");
    // Old versions stay readable and their keys deletable.
    assertEquals(await store.deleteKeys(ALICE, 1), { count: 0, etag: "0" });
    assertEquals(await store.keys(ALICE, 3), null);
    assertEquals(await store.key(ALICE, 3, ROOM_A, "s"), { version: null });
    assertEquals(await store.deleteKeys(ALICE, 3), null);
  });
});

Deno.test("2,500 sessions in one upload land in several commits with an exact count", async () => {
  await withStore(async (store, kv) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const keys = Array.from(
      { length: 2500 },
      (_, i) =>
        key(`!room${i % 40}:example.org`, `session-${i}`, {
          sessionData: {
            ciphertext: "c".repeat(600),
            ephemeral: "e".repeat(43),
            mac: "m".repeat(11),
          },
        }),
    );
    const state = ok(await store.putKeys(ALICE, 1, keys));
    assertEquals(state.count, 2500);
    assert(Number(state.etag) > 1, "more than one commit was needed");
    assertEquals(await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1)), 2500);
    assertEquals((await store.keys(ALICE, 1))?.length, 2500);
    assertEquals((await store.keys(ALICE, 1, "!room7:example.org"))?.length, 63);
    // Re-uploading all of it changes nothing.
    assertEquals(ok(await store.putKeys(ALICE, 1, keys)), state);
    const deleted = await store.deleteKeys(ALICE, 1);
    assertEquals(deleted?.count, 0);
    assertEquals(await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1)), 0);
  });
});

Deno.test("concurrent uploads through separate store instances keep the count exact", async () => {
  await withStore(async (_, kv) => {
    // Separate instances share no in-process queue: only the version record's check
    // serialises them, as between two server processes.
    const stores = Array.from({ length: 6 }, () => new KvKeyBackupStore(kv));
    await stores[0].createVersion(ALICE, ALG, { public_key: "k" });
    const uploads = stores.map((store, w) =>
      store.putKeys(
        ALICE,
        1,
        // Overlapping sessions: every writer uploads 0..149 plus 50 of its own.
        Array.from({ length: 200 }, (_, i) =>
          key(ROOM_A, i < 150 ? `shared-${i}` : `own-${w}-${i}`, { forwardedCount: w })),
      )
    );
    for (const result of await Promise.all(uploads)) assertEquals(result.kind, "ok");
    const info = await stores[0].version(ALICE, 1);
    const stored = await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1));
    assertEquals(stored, 150 + 6 * 50);
    assertEquals(info?.count, stored);
    // The rule picked the lowest forwarded_count for each shared session, whatever the order.
    const shared = (await stores[1].keys(ALICE, 1, ROOM_A))!.filter((k) =>
      k.sessionId.startsWith("shared-")
    );
    assertEquals(new Set(shared.map((k) => k.forwardedCount)), new Set([0]));
  });
});

Deno.test("concurrent uploads and deletes through one store keep the count exact", async () => {
  await withStore(async (store, kv) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const work: Promise<unknown>[] = [];
    for (let w = 0; w < 8; w++) {
      work.push(store.putKeys(ALICE, 1, [key(ROOM_A, `a${w}`), key(ROOM_B, `b${w}`)]));
      if (w % 3 === 0) work.push(store.deleteKeys(ALICE, 1, ROOM_B));
      if (w % 4 === 0) work.push(store.deleteKeys(ALICE, 1, ROOM_A, `a${w}`));
    }
    await Promise.all(work);
    const stored = await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1));
    assertEquals((await store.version(ALICE, 1))?.count, stored);
  });
});

Deno.test("deleting a version hides it in one commit, purges its keys and refuses writes", async () => {
  await withStore(async (store, kv) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const keys = Array.from({ length: 1500 }, (_, i) => key(ROOM_A, `s${i}`));
    ok(await store.putKeys(ALICE, 1, keys));
    assert(await store.deleteVersion(ALICE, 1));
    assertEquals(await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1)), 0);
    assertEquals(await countUnder(kv, e2eeKeys.backupVersionPrefix(ALICE)), 0, "tombstone gone");
    assertEquals(await store.putKeys(ALICE, 1, [key(ROOM_A, "late")]), { kind: "not_found" });
    assertEquals(await store.keys(ALICE, 1), null);
    assert(await store.deleteVersion(ALICE, 1), "still succeeds once purged");
  });
});

Deno.test("a purge interrupted after the hiding commit resumes on the next delete", async () => {
  await withStore(async (store, kv) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    ok(await store.putKeys(ALICE, 1, [key(ROOM_A, "s1"), key(ROOM_A, "s2")]));
    // The state a crash right after the hiding commit leaves: a tombstone and its keys.
    const versionKey = e2eeKeys.backupVersion(ALICE, 1);
    const record = (await kv.get<Record<string, unknown>>(versionKey)).value!;
    await kv.atomic()
      .set(versionKey, { ...record, deleted: true })
      .set(e2eeKeys.backupHead(ALICE), { last: 1, current: null })
      .commit();
    assertEquals(await store.version(ALICE, 1), null);
    assertEquals(await store.currentVersion(ALICE), null);
    assertEquals(await store.keys(ALICE, 1), null, "keys of a hidden version are not served");
    assert(await store.deleteVersion(ALICE, 1));
    assertEquals(await countUnder(kv, e2eeKeys.backupKeyPrefix(ALICE, 1)), 0);
    assertEquals((await kv.get(versionKey)).value, null);
  });
});

Deno.test("a session named twice in one upload keeps the better key", async () => {
  await withStore(async (store) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const state = ok(
      await store.putKeys(ALICE, 1, [
        key(ROOM_A, "s", { firstMessageIndex: 4 }),
        key(ROOM_A, "s", { firstMessageIndex: 2 }),
        key(ROOM_A, "s", { firstMessageIndex: 3 }),
      ]),
    );
    assertEquals(state.count, 1);
    const found = await store.key(ALICE, 1, ROOM_A, "s");
    assertEquals(found.version && found.key?.firstMessageIndex, 2);
  });
});

Deno.test("a small upload into a large room reads its sessions by key and applies the rule", async () => {
  await withStore(async (store) => {
    await store.createVersion(ALICE, ALG, { public_key: "k" });
    const stored = Array.from(
      { length: 100 },
      (_, i) => key(ROOM_A, `s${i}`, { firstMessageIndex: 5 }),
    );
    const before = ok(await store.putKeys(ALICE, 1, stored));
    // Few sessions against 100 stored: the room is too large to list, so keys are read by key.
    const after = ok(
      await store.putKeys(ALICE, 1, [
        key(ROOM_A, "s10", { firstMessageIndex: 6 }),
        key(ROOM_A, "s20", { firstMessageIndex: 4 }),
        key(ROOM_A, "new"),
      ]),
    );
    assertEquals(after.count, 101);
    assert(after.etag !== before.etag);
    const s10 = await store.key(ALICE, 1, ROOM_A, "s10");
    const s20 = await store.key(ALICE, 1, ROOM_A, "s20");
    assertEquals([
      s10.version && s10.key?.firstMessageIndex,
      s20.version && s20.key?.firstMessageIndex,
    ], [
      5,
      4,
    ]);
    assertEquals(
      ok(await store.putKeys(ALICE, 1, [key(ROOM_A, "s30", { firstMessageIndex: 7 })])),
      after,
    );
  });
});
