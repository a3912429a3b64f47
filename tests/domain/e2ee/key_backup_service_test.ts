/**
 * The key backup use cases: the spec's replacement rule, version parameters, the errors a
 * client sees (unknown, stale and malformed versions, mismatched updates, oversize data) and
 * the response shapes (empty rooms and sessions).
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  KeyBackupService,
  MAX_AUTH_DATA_BYTES,
  MAX_SESSION_DATA_BYTES,
  MEGOLM_BACKUP_V1,
  parseBackupVersion,
  replacesBackedUpKey,
} from "../../../domain/e2ee/key_backup_service.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { BackedUpKey } from "../../../domain/ports/key_backup_store.ts";
import { KvKeyBackupStore } from "../../../kv/key_backup_store.ts";

const ALICE = "@alice:example.org";
const ROOM = "!room:example.org";

function meta(isVerified: boolean, firstMessageIndex: number, forwardedCount: number) {
  return { isVerified, firstMessageIndex, forwardedCount };
}

function key(sessionId: string, overrides: Partial<BackedUpKey> = {}): BackedUpKey {
  return {
    roomId: ROOM,
    sessionId,
    firstMessageIndex: 0,
    forwardedCount: 0,
    isVerified: false,
    sessionData: { ciphertext: "c", ephemeral: "e", mac: "m" },
    ...overrides,
  };
}

async function matrixError(fn: () => Promise<unknown>): Promise<MatrixError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof MatrixError) return error;
    throw error;
  }
  throw new Error("expected a MatrixError");
}

async function withService(fn: (service: KeyBackupService) => Promise<void>) {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(new KeyBackupService(new KvKeyBackupStore(kv)));
  } finally {
    kv.close();
  }
}

Deno.test("replacement rule: verification first, then lower index, then lower forwards; ties keep", () => {
  const cases: [existing: ReturnType<typeof meta>, incoming: ReturnType<typeof meta>, boolean][] = [
    [meta(false, 5, 5), meta(true, 9, 9), true],
    [meta(true, 5, 5), meta(false, 0, 0), false],
    [meta(false, 5, 5), meta(false, 4, 9), true],
    [meta(true, 5, 0), meta(true, 6, 0), false],
    [meta(false, 5, 5), meta(false, 5, 4), true],
    [meta(false, 5, 5), meta(false, 5, 6), false],
    [meta(true, 5, 5), meta(true, 5, 5), false],
  ];
  for (const [existing, incoming, expected] of cases) {
    assertEquals(
      replacesBackedUpKey(existing, incoming),
      expected,
      JSON.stringify({ existing, incoming }),
    );
  }
});

Deno.test("version parameters: canonical positive decimals only", () => {
  assertEquals(parseBackupVersion("1"), 1);
  assertEquals(parseBackupVersion("42"), 42);
  for (const bad of ["", "0", "01", "-1", "1.0", "abc", "1e3", " 1", "9".repeat(16)]) {
    assertEquals(parseBackupVersion(bad), null, bad);
  }
});

Deno.test("service: version lifecycle and its errors", async () => {
  await withService(async (service) => {
    assertEquals((await matrixError(() => service.currentVersion(ALICE))).errcode, "M_NOT_FOUND");
    const { version } = await service.createVersion(ALICE, MEGOLM_BACKUP_V1, { public_key: "k" });
    assertEquals(version, "1");
    assertEquals(await service.currentVersion(ALICE), {
      version: "1",
      algorithm: MEGOLM_BACKUP_V1,
      auth_data: { public_key: "k" },
      count: 0,
      etag: "0",
    });
    for (const bad of ["abc", "01", "2"]) {
      const error = await matrixError(() => service.version(ALICE, bad));
      assertEquals([error.status, error.errcode], [404, "M_NOT_FOUND"], bad);
    }
    const mismatch = await matrixError(() =>
      service.updateVersion(ALICE, "1", { algorithm: "x.other", authData: {} })
    );
    assertEquals([mismatch.status, mismatch.errcode], [400, "M_INVALID_PARAM"]);
    const wrongBody = await matrixError(() =>
      service.updateVersion(ALICE, "1", {
        algorithm: MEGOLM_BACKUP_V1,
        authData: { public_key: "k2" },
        version: "2",
      })
    );
    assertEquals([wrongBody.status, wrongBody.errcode], [400, "M_INVALID_PARAM"]);
    await service.updateVersion(ALICE, "1", {
      algorithm: MEGOLM_BACKUP_V1,
      authData: { public_key: "k2" },
      version: "1",
    });
    assertEquals((await service.version(ALICE, "1")).auth_data, { public_key: "k2" });
    await service.deleteVersion(ALICE, "1");
    await service.deleteVersion(ALICE, "1");
    assertEquals((await matrixError(() => service.deleteVersion(ALICE, "5"))).status, 404);
    assertEquals((await matrixError(() => service.currentVersion(ALICE))).status, 404);
  });
});

Deno.test("service: bad version data is refused before anything is stored", async () => {
  await withService(async (service) => {
    const noKey = await matrixError(() => service.createVersion(ALICE, MEGOLM_BACKUP_V1, {}));
    assertEquals([noKey.status, noKey.errcode], [400, "M_BAD_JSON"]);
    const big = { public_key: "k", pad: "x".repeat(MAX_AUTH_DATA_BYTES) };
    const tooBig = await matrixError(() => service.createVersion(ALICE, MEGOLM_BACKUP_V1, big));
    assertEquals([tooBig.status, tooBig.errcode], [413, "M_TOO_LARGE"]);
    assertEquals((await matrixError(() => service.createVersion(ALICE, "", {}))).status, 400);
    // Other algorithms carry their own auth_data.
    assertEquals((await service.createVersion(ALICE, "org.example.alg", {})).version, "1");
  });
});

Deno.test("service: key writes, stale versions and response shapes", async () => {
  await withService(async (service) => {
    const missing = await matrixError(() => service.putKeys(ALICE, "1", [key("s")]));
    assertEquals([missing.status, missing.errcode], [404, "M_NOT_FOUND"]);
    await service.createVersion(ALICE, MEGOLM_BACKUP_V1, { public_key: "k" });
    assertEquals(await service.allKeys(ALICE, "1"), { rooms: {} });
    assertEquals(await service.roomKeys(ALICE, "1", ROOM), { sessions: {} });
    const noKey = await matrixError(() => service.sessionKey(ALICE, "1", ROOM, "s"));
    assertEquals([noKey.status, noKey.errcode], [404, "M_NOT_FOUND"]);

    const put = await service.putKeys(ALICE, "1", [key("s"), key("__proto__")]);
    assertEquals(put.count, 2);
    const all = await service.allKeys(ALICE, "1");
    assertEquals(Object.keys(all.rooms[ROOM].sessions).sort(), ["__proto__", "s"]);
    assertEquals(await service.sessionKey(ALICE, "1", ROOM, "s"), {
      first_message_index: 0,
      forwarded_count: 0,
      is_verified: false,
      session_data: { ciphertext: "c", ephemeral: "e", mac: "m" },
    });

    await service.createVersion(ALICE, MEGOLM_BACKUP_V1, { public_key: "k2" });
    const stale = await matrixError(() => service.putKeys(ALICE, "1", [key("t")]));
    assertEquals([stale.status, stale.errcode], [403, "M_WRONG_ROOM_KEYS_VERSION"]);
    assertEquals(stale.toJSON().current_version, "2");
    // The old version is still readable and its keys deletable.
    assertEquals((await service.deleteKeys(ALICE, "1", ROOM, "s")).count, 1);
  });
});

Deno.test("service: malformed keys are refused before anything is stored", async () => {
  await withService(async (service) => {
    await service.createVersion(ALICE, MEGOLM_BACKUP_V1, { public_key: "k" });
    const bad: [string, BackedUpKey, number][] = [
      ["bad room", key("s", { roomId: "not-a-room" }), 400],
      ["empty session", key(""), 400],
      ["long session", key("s".repeat(256)), 400],
      ["negative index", key("s", { firstMessageIndex: -1 }), 400],
      ["fractional count", key("s", { forwardedCount: 1.5 }), 400],
      [
        "huge session_data",
        key("s", { sessionData: { c: "x".repeat(MAX_SESSION_DATA_BYTES) } }),
        413,
      ],
    ];
    for (const [name, k, status] of bad) {
      const error = await matrixError(() => service.putKeys(ALICE, "1", [key("good"), k]));
      assertEquals(error.status, status, name);
    }
    assertEquals((await service.version(ALICE, "1")).count, 0, "no partial writes");
    await assertRejects(() => service.putKeys(ALICE, "x", [key("s")]), /Unknown backup version/);
    assert((await service.allKeys(ALICE, "1")).rooms[ROOM] === undefined);
  });
});
