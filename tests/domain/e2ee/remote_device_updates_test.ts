/**
 * The rules of following another server's device-list stream (remote_device_updates.ts) and the
 * cache service over an in-memory store: seen / apply / resync decisions, applying in order,
 * several devices under one stream ID, a failed resync marking the cache stale (and bounded by
 * the update timeout), a resync older than the cache kept out, lists too large to cache.
 */
import assert from "node:assert/strict";
import {
  cacheable,
  decideUpdate,
  type DeviceListUpdateEdu,
  listFromSnapshot,
  loggedReplacement,
  MAX_KNOWN_STREAM_IDS,
  type RemoteDeviceSnapshot,
  withUpdate,
} from "../../../domain/e2ee/remote_device_updates.ts";
import {
  RemoteDeviceCache,
  UPDATE_RESYNC_BACKOFF_MS,
  UPDATE_RESYNC_TIMEOUT_MS,
} from "../../../domain/e2ee/remote_device_cache.ts";
import type {
  LoggedRemoteChange,
  RemoteDeviceList,
  RemoteDeviceListDecision,
  RemoteDeviceStore,
} from "../../../domain/ports/remote_device_store.ts";
import { parseDeviceListUpdate } from "../../../domain/federation/edus/device_list_edu.ts";

const ALICE = "@alice:a.test";

function edu(
  streamId: number,
  prevIds: number[],
  deviceId = "D1",
  extra: Partial<DeviceListUpdateEdu> = {},
) {
  return { userId: ALICE, deviceId, streamId, prevIds, deleted: false, ...extra };
}

function snapshot(streamId: number, deviceIds: string[]): RemoteDeviceSnapshot {
  return {
    userId: ALICE,
    streamId,
    devices: deviceIds.map((deviceId) => ({ deviceId, displayName: deviceId })),
  };
}

Deno.test("decideUpdate: nothing cached or stale resyncs; below the position is seen; known prev_ids apply", () => {
  assert.equal(decideUpdate(null, edu(1, [])), "resync");
  assert.equal(decideUpdate(null, edu(5, [4])), "resync");
  const list = listFromSnapshot(snapshot(3, ["D1"]));
  assert.equal(decideUpdate({ ...list, stale: true }, edu(4, [3])), "resync");
  assert.equal(decideUpdate(list, edu(2, [1])), "seen");
  assert.equal(decideUpdate(list, edu(3, [2])), "seen", "the resync covered stream 3");
  assert.equal(decideUpdate(list, edu(4, [3])), "apply");
  assert.equal(decideUpdate(list, edu(5, [4])), "resync", "stream 4 never seen");
  assert.equal(decideUpdate(list, edu(4, [])), "resync", "an empty prev_id always resyncs");
  assert.equal(decideUpdate(list, edu(4, [3, 2])), "apply", "2 is covered by the resync at 3");
  assert.equal(decideUpdate(list, edu(6, [3, 5])), "resync", "every prev_id must be known");
  assert.equal(
    decideUpdate(list, edu(9, [1])),
    "apply",
    "a prev_id below the resync position (a server numbering globally) is covered",
  );
});

Deno.test("withUpdate: applied in order; later updates may name any known earlier one; one stream ID for two devices", () => {
  let list = listFromSnapshot(snapshot(1, ["D1"]));
  list = withUpdate(list, edu(2, [1], "D2", { displayName: "two" }));
  assert.equal(decideUpdate(list, edu(3, [2], "D1", { deleted: true })), "apply");
  list = withUpdate(list, edu(3, [2], "D1", { deleted: true }));
  assert.deepEqual(Object.keys(list.devices), ["D2"]);
  assert.equal(list.devices.D2.displayName, "two");
  assert.equal(list.streamId, 3);
  // Stream 4 names 2 (an earlier position we know): applied.
  assert.equal(decideUpdate(list, edu(4, [2], "D3")), "apply");
  list = withUpdate(list, edu(4, [2], "D3"));
  // A server that numbered a change of two devices once sends two updates at stream 4: the
  // second is not "seen" (4 was an update, not a resync) and its prev_id is known.
  assert.equal(decideUpdate(list, edu(4, [2], "D4")), "apply");
  list = withUpdate(list, edu(4, [2], "D4"));
  assert.deepEqual(Object.keys(list.devices).sort(), ["D2", "D3", "D4"]);
  // An update leaving out the display name clears it (it carries the device's whole state).
  list = withUpdate(list, edu(5, [4], "D2"));
  assert.equal(list.devices.D2.displayName, undefined);
});

Deno.test("withUpdate: the known positions stay bounded", () => {
  let list = listFromSnapshot(snapshot(0, []));
  for (let i = 1; i <= MAX_KNOWN_STREAM_IDS * 2; i++) list = withUpdate(list, edu(i, [i - 1]));
  assert.equal(list.known.length, MAX_KNOWN_STREAM_IDS);
  assert.equal(list.known.at(-1), MAX_KNOWN_STREAM_IDS * 2);
  assert.equal(decideUpdate(list, edu(1000, [1])), "resync", "forgotten positions are unknown");
});

Deno.test("loggedReplacement names changed, added and deleted devices and cross-signing changes", () => {
  const before = listFromSnapshot(snapshot(1, ["D1", "D2"]));
  const after = listFromSnapshot({
    ...snapshot(2, ["D2", "D3"]),
    masterKey: { user_id: ALICE, usage: ["master"], keys: {} },
  });
  const logged = loggedReplacement(before, after);
  assert.deepEqual(logged.deviceIds.sort(), ["D1", "D3"]);
  assert.deepEqual(logged.deleted, ["D1"]);
  assert.equal(logged.crossSigning, true);
  assert.equal(cacheable(after), true);
  const huge = listFromSnapshot({
    userId: ALICE,
    streamId: 1,
    devices: Array.from(
      { length: 1000 },
      (_, i) => ({ deviceId: `D${i}`, displayName: "x".repeat(500) }),
    ),
  });
  assert.equal(cacheable(huge), false);
});

Deno.test("parseDeviceListUpdate: positions as numbers or digit strings; malformed fields refuse; bad keys are dropped alone", () => {
  const base = { user_id: ALICE, device_id: "D1", stream_id: 2, prev_id: [1] };
  assert.deepEqual(parseDeviceListUpdate(base), edu(2, [1]));
  assert.deepEqual(parseDeviceListUpdate({ ...base, stream_id: "2", prev_id: ["1"] }), edu(2, [1]));
  assert.deepEqual(
    parseDeviceListUpdate({ user_id: ALICE, device_id: "D1", stream_id: 1 }),
    edu(1, []),
  );
  assert.equal(parseDeviceListUpdate({ ...base, stream_id: -1 }), null);
  assert.equal(parseDeviceListUpdate({ ...base, stream_id: 1.5 }), null);
  assert.equal(parseDeviceListUpdate({ ...base, prev_id: 1 }), null);
  assert.equal(parseDeviceListUpdate({ ...base, prev_id: Array(17).fill(1) }), null);
  assert.equal(parseDeviceListUpdate({ ...base, user_id: "alice" }), null);
  assert.equal(parseDeviceListUpdate({ ...base, device_id: "" }), null);
  assert.equal(parseDeviceListUpdate({ ...base, deleted: "yes" }), null);
  const keys = {
    user_id: ALICE,
    device_id: "D1",
    algorithms: ["m.olm.v1.curve25519-aes-sha2"],
    keys: { "ed25519:D1": "abc" },
    signatures: {},
  };
  assert.deepEqual(parseDeviceListUpdate({ ...base, keys })?.keys, keys);
  assert.equal(
    parseDeviceListUpdate({ ...base, keys: { ...keys, device_id: "D2" } })?.keys,
    undefined,
  );
  assert.equal(parseDeviceListUpdate({ ...base, keys: { device_keys: {} } })?.keys, undefined);
});

/** An in-memory RemoteDeviceStore recording what was logged. */
class MemoryStore implements RemoteDeviceStore {
  readonly lists = new Map<string, RemoteDeviceList>();
  readonly logged: LoggedRemoteChange[] = [];
  #stamp = 0;

  get(userIds: readonly string[]) {
    const out = new Map<string, RemoteDeviceList>();
    for (const id of userIds) {
      if (this.lists.has(id)) out.set(id, structuredClone(this.lists.get(id)!));
    }
    return Promise.resolve(out);
  }

  modify<T>(userId: string, decide: (c: RemoteDeviceList | null) => RemoteDeviceListDecision<T>) {
    const current = this.lists.get(userId);
    const decision = decide(current === undefined ? null : structuredClone(current));
    if (decision.write === undefined) {
      return Promise.resolve({ result: decision.result, versionstamp: null });
    }
    const { next, log } = decision.write;
    if (next === null) this.lists.delete(userId);
    else this.lists.set(userId, next);
    if (log !== null) this.logged.push(log);
    return Promise.resolve({ result: decision.result, versionstamp: String(++this.#stamp) });
  }

  drop(userIds: readonly string[]) {
    for (const id of userIds) this.lists.delete(id);
    return Promise.resolve();
  }
}

function cacheOver(
  store: MemoryStore,
  source: (timeoutMs?: number) => Promise<RemoteDeviceSnapshot>,
  now: () => number = Date.now,
) {
  const woken: string[] = [];
  const cache = new RemoteDeviceCache({
    now,
    store,
    source: { userDevices: (_server, _userId, timeoutMs) => source(timeoutMs) },
    sharesRoom: () => Promise.resolve(true),
    changed: (userIds) => {
      woken.push(...userIds);
      return Promise.resolve();
    },
  });
  return { cache, woken };
}

Deno.test("RemoteDeviceCache: a failed resync marks the cache stale (still answering); the server is not asked again for a while; then the next update resyncs", async () => {
  const store = new MemoryStore();
  let fail = false;
  const timeouts: (number | undefined)[] = [];
  let served = snapshot(1, ["D1"]);
  let clock = 1_000_000;
  const { cache, woken } = cacheOver(store, (timeoutMs) => {
    timeouts.push(timeoutMs);
    return fail ? Promise.reject(new Error("down")) : Promise.resolve(served);
  }, () => clock);
  assert.equal(await cache.applyUpdate(edu(1, [])), "resynced");
  assert.deepEqual(timeouts, [UPDATE_RESYNC_TIMEOUT_MS], "an update's resync is bounded");
  fail = true;
  assert.equal(await cache.applyUpdate(edu(3, [2])), "resync_failed");
  const stale = (await cache.lists([ALICE])).get(ALICE)!;
  assert.equal(stale.stale, true);
  assert.deepEqual(Object.keys(stale.devices), ["D1"], "the stale cache keeps its devices");
  // Within the backoff another update needing a resync does not ask the server again.
  fail = false;
  assert.equal(await cache.applyUpdate(edu(9, [8])), "resync_failed");
  assert.equal(timeouts.length, 2, "no request during the backoff");
  // Past it, even an update that follows on resyncs: the cache is behind.
  clock += UPDATE_RESYNC_BACKOFF_MS;
  served = snapshot(4, ["D1", "D2"]);
  assert.equal(await cache.applyUpdate(edu(4, [3])), "resynced");
  const fresh = (await cache.lists([ALICE])).get(ALICE)!;
  assert.equal(fresh.stale, undefined);
  assert.deepEqual(Object.keys(fresh.devices), ["D1", "D2"]);
  assert.deepEqual([...new Set(woken)], [ALICE]);
  assert.equal(store.logged.length, 3, "first resync, stale mark, second resync");
});

Deno.test("RemoteDeviceCache: a resync answer older than the cache is not written over it", async () => {
  const store = new MemoryStore();
  let served = snapshot(1, ["D1"]);
  const { cache } = cacheOver(store, () => Promise.resolve(served));
  await cache.applyUpdate(edu(1, []));
  await cache.applyUpdate(edu(2, [1], "D2"));
  served = snapshot(1, ["D1"]);
  const list = await cache.resync(ALICE, 1000);
  assert.equal(list.streamId, 2);
  assert.deepEqual(Object.keys(store.lists.get(ALICE)!.devices).sort(), ["D1", "D2"]);
});

Deno.test("RemoteDeviceCache: a list too large to cache is answered but not kept; updates for unshared users are dropped", async () => {
  const store = new MemoryStore();
  const huge: RemoteDeviceSnapshot = {
    userId: ALICE,
    streamId: 1,
    devices: Array.from(
      { length: 1000 },
      (_, i) => ({ deviceId: `D${i}`, displayName: "x".repeat(500) }),
    ),
  };
  const { cache } = cacheOver(store, () => Promise.resolve(huge));
  const list = await cache.resync(ALICE, 1000);
  assert.equal(Object.keys(list.devices).length, 1000);
  assert.equal(store.lists.size, 0);

  const unshared = new RemoteDeviceCache({
    store,
    source: { userDevices: () => Promise.reject(new Error("never asked")) },
    sharesRoom: () => Promise.resolve(false),
    changed: () => Promise.resolve(),
  });
  assert.equal(await unshared.applyUpdate(edu(1, [])), "not_shared");
  assert.equal(await unshared.applySigningKeys({ userId: ALICE, masterKey: {} }), false);
});

Deno.test("RemoteDeviceCache: a resync that lands after the sharing ended is dropped again", async () => {
  const store = new MemoryStore();
  let sharing = true;
  const cache = new RemoteDeviceCache({
    store,
    source: {
      userDevices: () => {
        sharing = false; // the leave commits while the request is out
        return Promise.resolve(snapshot(1, ["D1"]));
      },
    },
    sharesRoom: () => Promise.resolve(sharing),
    changed: () => Promise.resolve(),
  });
  const list = await cache.resync(ALICE, 1000);
  assert.deepEqual(Object.keys(list.devices), ["D1"], "the caller still gets its answer");
  assert.equal(store.lists.size, 0);
});
