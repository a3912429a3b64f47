/**
 * The device-list log. Every change to a user's devices or cross-signing keys is one update
 * with a per-user stream position and a `prev_id` chain (the shape of federation's
 * `m.device_list_update` EDU), written in the same atomic commit as the key change itself, plus
 * one entry in a global change index ordered by commit versionstamp, which sync and
 * `/keys/changes` read as "whose device lists changed in (since, upTo]".
 *
 * Writers gather updates in a `DeviceListChanges` and commit them through
 * `commitWithDeviceListChanges`, which checks each user's head so concurrent updates of one
 * user serialise and the chain never forks.
 *
 * Other servers' users are logged here too, by the remote device-list cache
 * (kv/remote_device_store.ts), so sync's index and per-user reads list them like local users;
 * their positions count this server's changes to the cache, not their server's stream_id, and
 * only local users' updates are sent over federation.
 */
import { mapLimited } from "../domain/concurrency.ts";
import { commitOrConflict, contentionBackoff, contentionError } from "./commit_retry.ts";
import { e2eeKeys } from "./schema.ts";
import { getManyChunked } from "./get_many.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { listChanges } from "./versioned_records.ts";
import { addWakes } from "./wake_keys.ts";
import { commitWakes, roomsOfUsers } from "./wake_fanout.ts";

/** One device-list update of one user. */
export interface DeviceListUpdate {
  userId: string;
  /**
   * The user's stream position of this update's last device: an update of n devices takes the
   * n positions after the previous update's (device i at prev + i), one without devices takes one.
   */
  streamId: number;
  /** Positions this update follows: the previous update's, none for the first. */
  prevIds: number[];
  /** Devices added, changed or deleted. */
  deviceIds: string[];
  /** Of `deviceIds`, those deleted. */
  deleted: string[];
  /** True when the user's cross-signing keys changed. */
  crossSigning: boolean;
}

/** What one writer changes for one user. */
export interface DeviceListChange {
  deviceIds?: readonly string[];
  deleted?: readonly string[];
  crossSigning?: boolean;
}

interface DeviceListHead {
  streamId: number;
}

/** The global change index entry: whose lists changed in one commit. */
export interface DeviceListChangeEntry {
  userIds: string[];
}

/** Device-list updates gathered for one commit. */
export class DeviceListChanges {
  readonly #byUser = new Map<string, Required<DeviceListChange>>();

  /** Note a change of `userId`'s devices or cross-signing keys. */
  add(userId: string, change: DeviceListChange): void {
    const current = this.#byUser.get(userId) ??
      { deviceIds: [], deleted: [], crossSigning: false };
    const deviceIds = new Set([...current.deviceIds, ...(change.deviceIds ?? [])]);
    for (const id of change.deleted ?? []) deviceIds.add(id);
    this.#byUser.set(userId, {
      deviceIds: [...deviceIds],
      deleted: [...new Set([...current.deleted, ...(change.deleted ?? [])])],
      crossSigning: current.crossSigning || (change.crossSigning ?? false),
    });
  }

  /** Users with a change. */
  get userIds(): string[] {
    return [...this.#byUser.keys()];
  }

  /** True when nothing was added. */
  get empty(): boolean {
    return this.#byUser.size === 0;
  }

  /**
   * Read the heads and stage every update into `op`: a check on each head, the new head, the
   * update with its prev_id, one global index entry and each user's wake key (their own syncs
   * list their changed devices). Returns the staged updates.
   */
  async stage(kv: Deno.Kv, op: Deno.AtomicOperation): Promise<DeviceListUpdate[]> {
    if (this.empty) return [];
    const userIds = this.userIds;
    const heads = await getManyChunked<DeviceListHead>(
      kv,
      userIds.map((id) => e2eeKeys.deviceListHead(id)),
    );
    const updates: DeviceListUpdate[] = [];
    userIds.forEach((userId, i) => {
      const head = heads[i];
      const previous = head.value?.streamId ?? 0;
      const change = this.#byUser.get(userId)!;
      // Each device takes its own position (federation's m.device_list_update names one device
      // and its stream_id is unique per user); a change of cross-signing keys alone takes one.
      const positions = Math.max(1, change.deviceIds.length);
      const update: DeviceListUpdate = {
        userId,
        streamId: previous + positions,
        prevIds: previous === 0 ? [] : [previous],
        deviceIds: [...change.deviceIds],
        deleted: [...change.deleted],
        crossSigning: change.crossSigning,
      };
      op.check(head);
      op.set(e2eeKeys.deviceListHead(userId), { streamId: update.streamId });
      op.set(e2eeKeys.deviceListUpdate(userId, update.streamId), update);
      updates.push(update);
    });
    op.set(
      [...e2eeKeys.deviceListChangePrefix(), kv.commitVersionstamp()],
      { userIds } satisfies DeviceListChangeEntry,
    );
    addWakes(op, { userIds });
    return updates;
  }
}

/** Result of a commit with device-list updates. */
export interface DeviceListCommit<T> {
  versionstamp: string;
  result: T;
  updates: DeviceListUpdate[];
}

/** Attempts before a commit under contention gives up. */
const MAX_ATTEMPTS = 64;

/**
 * Build a commit with `build` (which reads what it needs, adds its checks and mutations to `op`
 * and its device-list changes to `changes`), stage those changes and commit; start again from a
 * fresh read when a check fails or the local database is busy with another process's write.
 * `build` returning null commits nothing and gives null.
 */
export async function commitWithDeviceListChanges<T>(
  kv: Deno.Kv,
  build: (op: Deno.AtomicOperation, changes: DeviceListChanges) => Promise<T | null>,
): Promise<DeviceListCommit<T> | null> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    // A failed check means another writer got in first; after a few, spread the retries out
    // so the same writers do not keep colliding.
    if (attempt >= 2) await contentionBackoff(attempt);
    const op = kv.atomic();
    const changes = new DeviceListChanges();
    const result = await build(op, changes);
    if (result === null) return null;
    const updates = await changes.stage(kv, op);
    const committed = await commitOrConflict(op);
    if (committed.ok) {
      if (updates.length > 0) await wakeRoomMates(kv, changes.userIds);
      return { versionstamp: committed.versionstamp, result, updates };
    }
  }
  throw contentionError("committing a device-list change");
}

/** Memberships whose members hear about a user's device-list changes (as DeviceListNotifier). */
const SHARING = ["join", "invite", "knock"];

/**
 * Wake the rooms of users whose device lists just changed, so their room-mates' syncs in other
 * processes list them: in blind commits after the change's own (kv/wake_fanout.ts says why
 * that is safe), since its writers budget that commit without them and a user may be in more
 * rooms than it could hold. The change is committed, so a failure here is logged, not thrown:
 * only the wake-up is late (the waiter's timeout).
 */
async function wakeRoomMates(kv: Deno.Kv, userIds: readonly string[]): Promise<void> {
  try {
    await commitWakes(kv, { roomIds: await roomsOfUsers(kv, userIds, SHARING) });
  } catch (error) {
    console.warn("device lists: waking room-mates failed", userIds, error);
  }
}

/** Users whose device lists changed in commits after `since` (all when absent) up to `upTo`. */
export async function deviceListChangesBetween(
  kv: Deno.Kv,
  since: string | undefined,
  upTo: string,
): Promise<Set<string>> {
  const entries = await listChanges<DeviceListChangeEntry>(
    kv,
    e2eeKeys.deviceListChangePrefix(),
    since,
    upTo,
  );
  return new Set(entries.flatMap((e) => e.value.userIds));
}

/**
 * Like `deviceListChangesBetween` for a window (since, upTo], but reading at most `limit` index
 * entries: null when the window holds more (a long catch-up on a busy server), so a caller
 * can ask about the users it cares about instead (`usersWithDeviceListChanges`).
 */
export async function deviceListChangesWithin(
  kv: Deno.Kv,
  since: string,
  upTo: string,
  limit: number,
): Promise<Set<string> | null> {
  const after = parseSyncToken(since);
  const last = parseSyncToken(upTo);
  const prefix = e2eeKeys.deviceListChangePrefix();
  const users = new Set<string>();
  let entries = 0;
  // The entry at `since` itself is not in the window: one more than the limit, plus it.
  const iter = kv.list<DeviceListChangeEntry>(
    { prefix, start: [...prefix, after] },
    { limit: limit + 2, batchSize: Math.min(limit + 2, 500) },
  );
  for await (const entry of iter) {
    const stamp = entry.key[entry.key.length - 1] as string;
    if (stamp === after) continue;
    if (stamp > last) return users;
    if (++entries > limit) return null;
    for (const userId of entry.value.userIds) users.add(userId);
  }
  return users;
}

/** Users read at once by `usersWithDeviceListChanges` beyond their heads. */
const LOGS_READ_IN_FLIGHT = 16;

/**
 * Which of `userIds` had a device-list update committed in (since, upTo], from each user's own
 * log: the head's versionstamp says whether anything changed after `since`; only a user whose
 * head moved after `upTo` too has their updates walked back (newest first) to the window.
 */
export async function usersWithDeviceListChanges(
  kv: Deno.Kv,
  userIds: readonly string[],
  since: string,
  upTo: string,
): Promise<Set<string>> {
  const after = parseSyncToken(since);
  const last = parseSyncToken(upTo);
  const unique = [...new Set(userIds)];
  const heads = await getManyChunked<DeviceListHead>(
    kv,
    unique.map((userId) => e2eeKeys.deviceListHead(userId)),
  );
  const changed = new Set<string>();
  const moved: string[] = [];
  unique.forEach((userId, i) => {
    const stamp = heads[i].versionstamp;
    if (stamp === null || stamp <= after) return;
    if (stamp <= last) changed.add(userId);
    else moved.push(userId);
  });
  await mapLimited(moved, LOGS_READ_IN_FLIGHT, async (userId) => {
    const updates = kv.list<DeviceListUpdate>(
      { prefix: e2eeKeys.deviceListUpdatePrefix(userId) },
      { reverse: true, batchSize: 16 },
    );
    for await (const entry of updates) {
      if (entry.versionstamp <= after) return;
      if (entry.versionstamp <= last) {
        changed.add(userId);
        return;
      }
    }
  });
  return changed;
}

/** A user's updates after stream position `after` (all when 0), oldest first. */
export async function deviceListUpdatesAfter(
  kv: Deno.Kv,
  userId: string,
  after = 0,
): Promise<DeviceListUpdate[]> {
  const prefix = e2eeKeys.deviceListUpdatePrefix(userId);
  const out: DeviceListUpdate[] = [];
  for await (
    const entry of kv.list<DeviceListUpdate>({ prefix, start: [...prefix, after + 1] })
  ) out.push(entry.value);
  return out;
}

/** Updates `deviceListDeviceStreamId` walks back before settling for the head. */
const DEVICE_POSITION_LOOKBACK = 64;

/**
 * The position of the user's last device change (0 before any): the stream_id
 * `GET /user/devices` reports. An update of cross-signing keys alone takes a position but goes
 * out as m.signing_key_update, which has none, so the next m.device_list_update names the last
 * device position as its prev_id; a receiver that resynced in between must know that one.
 * Past `DEVICE_POSITION_LOOKBACK` cross-signing updates in a row, the head (the receiver then
 * resyncs once more).
 */
export async function deviceListDeviceStreamId(kv: Deno.Kv, userId: string): Promise<number> {
  const updates = kv.list<DeviceListUpdate>(
    { prefix: e2eeKeys.deviceListUpdatePrefix(userId) },
    { reverse: true, limit: DEVICE_POSITION_LOOKBACK, batchSize: 8 },
  );
  let head: number | undefined;
  for await (const entry of updates) {
    head ??= entry.value.streamId;
    if (entry.value.deviceIds.length > 0) return entry.value.streamId;
  }
  return head ?? 0;
}

/** The user's current device-list stream position (0 before any update). */
export async function deviceListStreamId(kv: Deno.Kv, userId: string): Promise<number> {
  return (await kv.get<DeviceListHead>(e2eeKeys.deviceListHead(userId))).value?.streamId ?? 0;
}
