/**
 * Device keys, one-time keys and fallback keys in KV.
 *
 * - Device keys: one UTF-8 JSON record per device. Storing new ones goes through
 *   `commitWithDeviceListChanges`, so the device-list update lands in the same commit.
 * - One-time keys: a claim queue keyed by (algorithm, upload seq, key ID), which hands keys out
 *   oldest upload first, and an index by key ID holding the seq, which finds a re-uploaded ID.
 *   Both change together: an upload writes both, a claim deletes both.
 * - Each device's upload head (`{seq}`) is checked and rewritten by every upload that stores
 *   something, so one device's uploads serialise across processes, and numbers the uploads.
 * - Fallback keys: one record per algorithm with its `used` flag.
 */
import { canonicalJson } from "../domain/protocol/canonical_json.ts";
import { mapLimited } from "../domain/concurrency.ts";
import type { JsonObject, JsonValue } from "../domain/protocol/json.ts";
import type {
  ClaimedKey,
  DeviceKeysByUser,
  DeviceKeyStore,
  KeyUpload,
  KeyUploadOutcome,
  UploadedKey,
} from "../domain/ports/device_key_store.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import {
  addCommitSizes,
  applyMutations,
  commitOverLimit,
  type CommitSize,
  measureCommit,
  type PlannedMutation,
} from "./commit_budget.ts";
import {
  commitWithDeviceListChanges,
  deviceListStreamId,
  type DeviceListUpdate,
} from "./device_list_log.ts";
import { getManyChunked } from "./get_many.ts";
import { type FallbackKeyRecord, OneTimeKeyClaims } from "./one_time_key_claims.ts";
import { commitOrConflict, contentionError } from "./commit_retry.ts";
import { e2eeKeys } from "./schema.ts";

/** Index entry of a stored one-time key: the upload that stored it; `claimed` once handed out. */
interface OneTimeKeyIndex {
  seq: number;
  claimed?: true;
}

/** A device's last upload. */
interface UploadHead {
  seq: number;
}

/**
 * Room left in a commit for the device-list update `commitWithDeviceListChanges` stages (head,
 * update, global index entry) once the planned mutations are known.
 */
const DEVICE_LIST_RESERVE: CommitSize = {
  mutations: 8,
  checks: 4,
  mutationBytes: 16_384,
  keyBytes: 4_096,
};

/** Devices whose keys one removal commit deletes at most (each costs a check). */
const DEVICES_PER_REMOVAL = 32;

/** Users whose device keys are read at once (a /keys/query may name thousands). */
const USERS_READ_IN_FLIGHT = 16;

/** One-time keys split into new ones and IDs stored with other content. */
interface OneTimeKeyPlan {
  fresh: UploadedKey[];
  conflicts: string[];
}

/** The KV implementation of the device key port. */
export class KvDeviceKeyStore implements DeviceKeyStore {
  readonly #claims: OneTimeKeyClaims;

  /** Store keys in `kv`. */
  constructor(private readonly kv: Deno.Kv) {
    this.#claims = new OneTimeKeyClaims(kv);
  }

  async deviceKeys(query: ReadonlyMap<string, readonly string[]>): Promise<DeviceKeysByUser> {
    const out: DeviceKeysByUser = new Map();
    await mapLimited([...query], USERS_READ_IN_FLIGHT, async ([userId, deviceIds]) => {
      const devices = new Map<string, JsonObject>();
      out.set(userId, devices);
      if (deviceIds.length === 0) {
        const prefix = e2eeKeys.deviceKeysPrefix(userId);
        for await (const entry of this.kv.list<Uint8Array>({ prefix })) {
          devices.set(entry.key[entry.key.length - 1] as string, decodeJson(entry.value));
        }
        return;
      }
      const unique = [...new Set(deviceIds)];
      const entries = await getManyChunked<Uint8Array>(
        this.kv,
        unique.map((deviceId) => e2eeKeys.deviceKeys(userId, deviceId)),
      );
      entries.forEach((entry, i) => {
        if (entry.value !== null) devices.set(unique[i], decodeJson(entry.value));
      });
    });
    return out;
  }

  async upload(userId: string, deviceId: string, upload: KeyUpload): Promise<KeyUploadOutcome> {
    let conflicts: string[] = [];
    let rest: UploadedKey[] = [];
    let seq = 0;
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const head = await this.kv.get<UploadHead>(e2eeKeys.keyUploadHead(userId, deviceId));
      const planned: PlannedMutation[] = [];
      if (upload.deviceKeys) {
        const key = e2eeKeys.deviceKeys(userId, deviceId);
        const stored = await this.kv.get<Uint8Array>(key);
        const next = upload.deviceKeys(stored.value ? decodeJson(stored.value) : null);
        if (next !== null) {
          planned.push({ op: "check", key, versionstamp: stored.versionstamp });
          planned.push({ op: "set", key, value: encodeJson(next) });
          changes.add(userId, { deviceIds: [deviceId] });
        }
      }
      planned.push(...await this.#planFallbackKeys(userId, deviceId, upload.fallbackKeys));
      const otks = await this.#planOneTimeKeys(userId, deviceId, upload.oneTimeKeys);
      conflicts = otks.conflicts;
      if (conflicts.length > 0) return null;
      if (planned.length === 0 && otks.fresh.length === 0) return null;
      seq = (head.value?.seq ?? 0) + 1;
      planned.push(
        { op: "check", key: head.key, versionstamp: head.versionstamp },
        { op: "set", key: head.key, value: { seq } satisfies UploadHead },
      );
      const fitted = fitOneTimeKeys(
        planned,
        otks.fresh,
        (k) => this.#otkWrites(userId, deviceId, seq, k),
      );
      rest = otks.fresh.slice(fitted);
      applyMutations(op, planned);
      return true;
    });
    if (conflicts.length > 0) {
      return { conflictingOneTimeKeys: conflicts, deviceListVersionstamp: null };
    }
    // Only huge uploads with long IDs get here: the keys that did not fit the first commit go in
    // further ones. A retry of the same upload skips what landed, so a crash between is repaired.
    while (rest.length > 0) {
      const outcome = await this.#storeMoreOneTimeKeys(userId, deviceId, seq, rest);
      if (outcome.conflicts.length > 0) {
        return { conflictingOneTimeKeys: outcome.conflicts, deviceListVersionstamp: null };
      }
      rest = outcome.rest;
    }
    const announced = committed !== null && committed.updates.length > 0;
    return {
      conflictingOneTimeKeys: [],
      deviceListVersionstamp: announced ? committed.versionstamp : null,
    };
  }

  claim(userId: string, deviceId: string, algorithm: string): Promise<ClaimedKey | null> {
    return this.#claims.claim(userId, deviceId, algorithm);
  }

  async oneTimeKeyCounts(userId: string, deviceId: string): Promise<Record<string, number>> {
    // Keys queued minus keys claimed, per algorithm: both counters move in the commits that
    // queue and claim, so this equals the queue's length without listing it (every sync asks).
    const counts: Record<string, number> = {};
    const prefix = e2eeKeys.oneTimeKeyCountPrefix(userId, deviceId);
    for await (const entry of this.kv.list<Deno.KvU64>({ prefix })) {
      const algorithm = entry.key[prefix.length] as string;
      const sign = entry.key[prefix.length + 1] === "claimed" ? -1 : 1;
      counts[algorithm] = (counts[algorithm] ?? 0) + sign * Number(entry.value.value);
    }
    // Algorithms whose keys are all claimed are absent, as if the queue were listed.
    for (const [algorithm, n] of Object.entries(counts)) if (n === 0) delete counts[algorithm];
    return counts;
  }

  async unusedFallbackKeyTypes(userId: string, deviceId: string): Promise<string[]> {
    const prefix = e2eeKeys.fallbackKeyPrefix(userId, deviceId);
    const types: string[] = [];
    for await (const entry of this.kv.list<FallbackKeyRecord>({ prefix })) {
      if (!entry.value.used) types.push(entry.key[prefix.length] as string);
    }
    return types;
  }

  async fallbackKeyAlgorithms(userId: string, deviceId: string): Promise<string[]> {
    const prefix = e2eeKeys.fallbackKeyPrefix(userId, deviceId);
    const algorithms: string[] = [];
    for await (const entry of this.kv.list({ prefix })) {
      algorithms.push(entry.key[prefix.length] as string);
    }
    return algorithms;
  }

  async announceDeviceChange(userId: string, deviceId: string): Promise<string | null> {
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const keys = await this.kv.get(e2eeKeys.deviceKeys(userId, deviceId));
      if (keys.value === null) return null;
      // Checked, so a removal landing meanwhile cannot be followed by an update for a live device.
      op.check(keys);
      changes.add(userId, { deviceIds: [deviceId] });
      return true;
    });
    return committed?.versionstamp ?? null;
  }

  /** See DeviceKeyStore.announceDevices. */
  async announceDevices(
    userId: string,
    change: { deviceIds?: readonly string[]; deleted?: readonly string[] },
  ): Promise<string | null> {
    const committed = await commitWithDeviceListChanges(this.kv, async (_op, changes) => {
      if ((change.deviceIds ?? []).length === 0 && (change.deleted ?? []).length > 0) {
        // A removal hook run again (after a crash) announces nothing new: the latest update
        // already says these devices went.
        const streamId = await deviceListStreamId(this.kv, userId);
        const latest = streamId === 0
          ? null
          : (await this.kv.get<DeviceListUpdate>(e2eeKeys.deviceListUpdate(userId, streamId)))
            .value;
        if (change.deleted!.every((id) => latest?.deleted.includes(id))) return null;
      }
      changes.add(userId, change);
      return true;
    });
    return committed?.versionstamp ?? null;
  }

  async removeDevices(userId: string, deviceIds: readonly string[]): Promise<string | null> {
    const devices = [...new Set(deviceIds)];
    let versionstamp: string | null = null;
    // A commit takes 100 checks: a user with very many devices (logout from all) gets one
    // device-list update per group of devices.
    for (let i = 0; i < devices.length; i += DEVICES_PER_REMOVAL) {
      const group = devices.slice(i, i + DEVICES_PER_REMOVAL);
      versionstamp = await this.#removeDeviceGroup(userId, group) ?? versionstamp;
    }
    return versionstamp;
  }

  /**
   * Remove a few devices' keys: one commit deletes everything and records the update, unless
   * their one-time keys are too many; then those go ahead in chunks and the device keys, whose
   * presence is what says an update is due, go last with the update. A crash in between leaves
   * the device keys, so running again finishes the job.
   */
  async #removeDeviceGroup(userId: string, devices: readonly string[]): Promise<string | null> {
    const bulk: PlannedMutation[] = [];
    for (const deviceId of devices) {
      bulk.push({ op: "delete", key: e2eeKeys.keyUploadHead(userId, deviceId) });
      for (
        const prefix of [
          e2eeKeys.fallbackKeyPrefix(userId, deviceId),
          e2eeKeys.oneTimeKeyQueuePrefix(userId, deviceId),
          e2eeKeys.oneTimeKeyPrefix(userId, deviceId),
          e2eeKeys.oneTimeKeyCountPrefix(userId, deviceId),
        ]
      ) {
        for await (const entry of this.kv.list({ prefix }, { batchSize: 1000 })) {
          bulk.push({ op: "delete", key: entry.key });
        }
      }
    }
    const deviceKeyKeys = devices.map((deviceId) => e2eeKeys.deviceKeys(userId, deviceId));
    const last: PlannedMutation[] = deviceKeyKeys.flatMap((key) => [
      { op: "check", key, versionstamp: null },
      { op: "delete", key },
    ]);
    let remaining = bulk;
    for (let attempt = 0; !fits([...last, ...remaining]); attempt++) {
      if (attempt >= 64) throw contentionError("removing one-time keys");
      const chunk = takeFitting(remaining);
      // Deletes need no check (what a racing claim took is simply gone already); a busy
      // database only means this chunk goes again.
      if (!(await commitOrConflict(applyMutations(this.kv.atomic(), chunk))).ok) continue;
      remaining = remaining.slice(chunk.length);
      attempt = 0;
    }
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const stored = await getManyChunked<Uint8Array>(this.kv, deviceKeyKeys);
      const withKeys = devices.filter((_, i) => stored[i].value !== null);
      if (withKeys.length === 0 && remaining.length === 0) return null;
      for (const entry of stored) op.check(entry).delete(entry.key);
      applyMutations(op, remaining);
      if (withKeys.length > 0) changes.add(userId, { deleted: withKeys });
      return true;
    });
    return committed !== null && committed.updates.length > 0 ? committed.versionstamp : null;
  }

  /** Fallback keys to write: each replaces the stored one unless it is the same key again. */
  async #planFallbackKeys(
    userId: string,
    deviceId: string,
    keys: readonly UploadedKey[],
  ): Promise<PlannedMutation[]> {
    const entries = await getManyChunked<FallbackKeyRecord>(
      this.kv,
      keys.map((k) => e2eeKeys.fallbackKey(userId, deviceId, k.algorithm)),
    );
    const planned: PlannedMutation[] = [];
    keys.forEach((k, i) => {
      const stored = entries[i];
      if (stored.value?.keyId === k.keyId && sameJson(stored.value.key, k.key)) return;
      // Checked so that a claim marking the old key used cannot be lost under the new one.
      planned.push(
        { op: "check", key: stored.key, versionstamp: stored.versionstamp },
        {
          op: "set",
          key: stored.key,
          value: { keyId: k.keyId, key: k.key, used: false } satisfies FallbackKeyRecord,
        },
      );
    });
    return planned;
  }

  /** Which uploaded one-time keys are new, and which IDs are stored with other content. */
  async #planOneTimeKeys(
    userId: string,
    deviceId: string,
    keys: readonly UploadedKey[],
  ): Promise<OneTimeKeyPlan> {
    const index = await getManyChunked<OneTimeKeyIndex>(
      this.kv,
      keys.map((k) => e2eeKeys.oneTimeKey(userId, deviceId, k.algorithm, k.keyId)),
    );
    const existing = keys.flatMap((k, i) => {
      const seq = index[i].value?.seq;
      return seq === undefined ? [] : [{ k, seq }];
    });
    const stored = await getManyChunked<JsonValue>(
      this.kv,
      existing.map(({ k, seq }) =>
        e2eeKeys.oneTimeKeyQueue(userId, deviceId, k.algorithm, seq, k.keyId)
      ),
    );
    const conflicts = existing.flatMap(({ k }, i) =>
      // A claim took the key (the index says `claimed`, or it did so between the two reads):
      // it is gone, and uploading it again must not put it back.
      stored[i].value !== null && !sameJson(stored[i].value, k.key)
        ? [`${k.algorithm}:${k.keyId}`]
        : []
    );
    const known = new Set(existing.map(({ k }) => k));
    return { fresh: keys.filter((k) => !known.has(k)), conflicts };
  }

  /** The two writes of one new one-time key. */
  #otkWrites(userId: string, deviceId: string, seq: number, k: UploadedKey): PlannedMutation[] {
    return [
      {
        op: "set",
        key: e2eeKeys.oneTimeKeyQueue(userId, deviceId, k.algorithm, seq, k.keyId),
        value: k.key,
      },
      {
        op: "set",
        key: e2eeKeys.oneTimeKey(userId, deviceId, k.algorithm, k.keyId),
        value: { seq } satisfies OneTimeKeyIndex,
      },
      {
        op: "sum",
        key: e2eeKeys.oneTimeKeyCount(userId, deviceId, k.algorithm, "uploaded"),
        value: 1n,
      },
    ];
  }

  /** Store one more commit's worth of an upload's one-time keys (after the first commit). */
  async #storeMoreOneTimeKeys(
    userId: string,
    deviceId: string,
    seq: number,
    keys: UploadedKey[],
  ): Promise<{ rest: UploadedKey[]; conflicts: string[] }> {
    for (let attempt = 0; attempt < 64; attempt++) {
      const head = await this.kv.get<UploadHead>(e2eeKeys.keyUploadHead(userId, deviceId));
      const plan = await this.#planOneTimeKeys(userId, deviceId, keys);
      if (plan.conflicts.length > 0) return { rest: [], conflicts: plan.conflicts };
      const planned: PlannedMutation[] = [
        { op: "check", key: head.key, versionstamp: head.versionstamp },
        { op: "set", key: head.key, value: { seq: Math.max(seq, head.value?.seq ?? 0) } },
      ];
      const fitted = fitOneTimeKeys(
        planned,
        plan.fresh,
        (k) => this.#otkWrites(userId, deviceId, seq, k),
      );
      if ((await commitOrConflict(applyMutations(this.kv.atomic(), planned))).ok) {
        return { rest: plan.fresh.slice(fitted), conflicts: [] };
      }
    }
    throw contentionError("storing one-time keys");
  }
}

/**
 * Append the writes of as many of `keys` as fit beside `planned` (and the device-list reserve)
 * to `planned`; returns how many. At least one always goes in, since every part is bounded.
 */
function fitOneTimeKeys(
  planned: PlannedMutation[],
  keys: readonly UploadedKey[],
  writes: (k: UploadedKey) => PlannedMutation[],
): number {
  let size = addCommitSizes(DEVICE_LIST_RESERVE, measureCommit(planned));
  let n = 0;
  for (const k of keys) {
    const more = writes(k);
    const next = addCommitSizes(size, measureCommit(more));
    if (n > 0 && commitOverLimit(next) !== null) break;
    planned.push(...more);
    size = next;
    n++;
  }
  return n;
}

/** True when these mutations (plus the device-list reserve) fit one commit. */
function fits(mutations: readonly PlannedMutation[]): boolean {
  return commitOverLimit(addCommitSizes(DEVICE_LIST_RESERVE, measureCommit(mutations))) === null;
}

/** The longest prefix of `mutations` that fits one commit (at least one). */
function takeFitting(mutations: readonly PlannedMutation[]): PlannedMutation[] {
  let size = DEVICE_LIST_RESERVE;
  let n = 0;
  for (const m of mutations) {
    const next = addCommitSizes(size, measureCommit([m]));
    if (n > 0 && commitOverLimit(next) !== null) break;
    size = next;
    n++;
  }
  return mutations.slice(0, n);
}

function sameJson(a: JsonValue, b: JsonValue): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
