/**
 * Outbound device lists: after every committed change of a LOCAL user's devices or
 * cross-signing keys, `m.device_list_update` EDUs (one per device) and `m.signing_key_update`
 * go to every server sharing a room with the user, in stream order.
 *
 * How the device-list log maps onto EDUs. The log (kv/device_list_log.ts) holds one update per
 * commit with a per-user stream position; one update may name several devices (a logout of
 * every device) and may change cross-signing keys. The spec makes an EDU's `stream_id` unique
 * per user and names one device per EDU, and a receiver drops an EDU whose `stream_id` it has
 * seen (Synapse 1.67 and Tessera's own receiver alike), so every device of an update takes its
 * own stream position: an update of n devices takes the n positions after the previous update
 * (the log numbers them so; its last is the update's `streamId`), and device i's EDU carries
 * position prev + i. An update of cross-signing keys alone takes one position, but goes out as
 * `m.signing_key_update`, which has no stream ID, so a receiver never learns that position:
 * the next device EDU's `prev_id` is therefore the stream ID of the last device EDU sent for
 * the user, skipping cross-signing positions. (Synapse's sender can name the cross-signing
 * position, which costs its receivers a resync after a cross-signing change; ours follows on
 * without one.) For the same reason `GET /user/devices` reports the last device position as its
 * `stream_id` (`deviceListDeviceStreamId`), not the head: a receiver resyncing between a
 * cross-signing change and the next device change can then follow that device's EDU.
 *
 * Exactly once, in order, across processes: a per-user mark records how far the log was queued
 * (`streamId`) and the stream ID of the last device EDU (`eduStreamId`). A pass reads the mark
 * and every update after it, builds the EDUs of all of them (a device changed twice goes once,
 * with its current keys, at its latest position; the `prev_id` chain skips the positions not
 * sent) and queues them in a commit that checks and moves the mark; a pass that lost the race
 * to another process reads again. So updates whose queueing a crash cut off (the key change
 * committed, its EDUs not yet queued) are not lost: the user's next change queues them too, late.
 * If the user never changes again they stay unsent, and the first EDU a server gets afterwards
 * names a `prev_id` it has not seen: the receiver resyncs (`GET /user/devices`), as it does on
 * any gap. A very large fan-out is queued in several commits and only the last moves the mark:
 * a crash or lost race in between queues some servers' EDUs twice, which their receivers drop
 * as already seen (stream ID not newer), never out of order.
 *
 * A pass with no server sharing a room with the user queues nothing and leaves the mark, so
 * servers that start sharing a room later get the pending updates; their first `prev_id` is new
 * to them and they resync, which they do for a user they start tracking anyway. At most
 * `MAX_PENDING_UPDATES` updates are read; when more are pending, or a pass would send more than
 * `MAX_DEVICE_EDUS` device EDUs, only the latest ones go and the first carries an empty
 * `prev_id`, which makes every receiver resync instead of applying a partial list.
 *
 * EDU contents are read when queued, as `/user/keys/query` shows them to other servers: `keys`
 * is the device's current device keys with its owner's signatures (the self-signing one),
 * `deleted: true` marks a device that no longer exists; the signing-key update carries the
 * current master key (with the owner's device signatures) and self-signing key. No
 * `device_display_name`: `/user/devices` and `/user/keys/query` leave names out (Synapse's
 * default; a name like "Alice's work laptop" is not for every server sharing a room with
 * her), and a name sent here would vanish again at the receiver's next resync. A rename still
 * sends its EDU, as Synapse does: the receiver's clients re-query the device.
 */
import { serverNameOf } from "../../protocol/auth_context.ts";
import type { JsonObject } from "../../protocol/json.ts";
import type { CommitMutation, EventReader } from "../../ports/event_store.ts";
import type { KnownDevice } from "../../e2ee/key_query.ts";
import type { ServerKeyQueryResponse } from "../server_key_queries.ts";
import type { Edu } from "../federation_transactions.ts";
import { serversSharingRoomWith } from "../room_sharing.ts";

/** One update of the device-list log as the sender reads it (kv/device_list_log.ts writes it). */
export interface LoggedDeviceListUpdate {
  /** The position of the update's last device (its only position without devices). */
  streamId: number;
  /** The previous update's position; none for the user's first update. */
  prevIds: number[];
  /** Devices added, changed or deleted, each on its own position, in this order. */
  deviceIds: string[];
  /** True when the user's cross-signing keys changed. */
  crossSigning: boolean;
}

/** How far a user's device-list log was queued for other servers. */
export interface DeviceListSentMark {
  /** The last log update queued. */
  streamId: number;
  /** The stream ID of the last device EDU queued: the next one's `prev_id` (0: none). */
  eduStreamId: number;
}

/** The user's mark and the log updates after it. */
export interface PendingDeviceListUpdates {
  /** Null before anything of the user was queued. */
  mark: DeviceListSentMark | null;
  /** The mark's version, checked when it is moved (null: absent). */
  version: string | null;
  /** The latest `limit` updates after the mark, oldest first. */
  updates: LoggedDeviceListUpdate[];
}

/** The storage the sender runs on (kv/device_list_outbound.ts). */
export interface DeviceListOutbound {
  /** `userId`'s mark and at most the latest `limit` updates after it. */
  pending(userId: string, limit: number): Promise<PendingDeviceListUpdates>;
  /**
   * Commit `parts` in order, each in its own commit, the last together with `mark` as the
   * user's new mark provided it is still at `version`; false (the last part unwritten) when it
   * moved meanwhile.
   */
  queue(
    userId: string,
    version: string | null,
    mark: DeviceListSentMark,
    parts: readonly CommitMutation[][],
  ): Promise<boolean>;
}

/** What the sender is built from. */
export interface DeviceListSenderDeps {
  outbound: DeviceListOutbound;
  /** Rooms and their servers: who shares a room with the user. */
  store: Pick<EventReader, "roomsOfUser" | "serversInRoom">;
  /** The outbox: EDU writes for our own commit (FederationSender). */
  federation: {
    eduMutations(entries: readonly { destination: string; edu: Edu }[]): CommitMutation[];
    wake(): void;
  };
  /** Local users' keys as other servers see them (`ServerKeyQueries.query`). */
  keysForServers(query: Record<string, string[]>): Promise<ServerKeyQueryResponse>;
  /** The user's current devices. */
  devicesOf(userId: string): Promise<KnownDevice[]>;
  serverName: string;
  /** False with federation off: nothing is read or queued. */
  enabled: boolean;
  /** Where failures go (tests capture them). */
  log?: (message: string, ...details: unknown[]) => void;
}

/** Log updates one pass reads; older pending ones are skipped (receivers resync). */
export const MAX_PENDING_UPDATES = 100;
/** Device EDUs per user one pass queues; beyond it only the latest go (receivers resync). */
export const MAX_DEVICE_EDUS = 50;
/** Outbox entries per commit: two keys each (up to ~350 bytes) of KV's 80 KiB of keys. */
const ENTRIES_PER_COMMIT = 80;
/** EDU bytes per commit, of KV's 800 KiB of mutations. */
const BYTES_PER_COMMIT = 400 * 1024;
/** Passes of one user before giving up to other writers (each lost race means they queued). */
const MAX_ATTEMPTS = 8;

/** One device EDU to build: the device and its stream position. */
interface DeviceSlot {
  deviceId: string;
  streamId: number;
}

/** What one pass sends, before contents are read. */
export interface DeviceListPlan {
  /** Device EDUs in stream order. */
  devices: DeviceSlot[];
  /** The `prev_id` of the first device EDU. */
  firstPrevIds: number[];
  /** Whether a signing-key update goes after the device EDUs. */
  signingKeys: boolean;
  /** The mark after this pass. */
  mark: DeviceListSentMark;
}

/**
 * Which EDUs the pending updates make (pure): each device at its latest position, the
 * `prev_id` chain from the mark's last device EDU, or empty (a forced resync) when updates
 * were skipped or there are more devices than one pass sends.
 */
export function planDeviceListEdus(pending: PendingDeviceListUpdates): DeviceListPlan | null {
  const { mark, updates } = pending;
  if (updates.length === 0) return null;
  // Continuity: the first update read must follow the mark, else some were never read.
  let resync = (updates[0].prevIds[0] ?? 0) !== (mark?.streamId ?? 0);
  const latest = new Map<string, number>();
  let signingKeys = false;
  for (const update of updates) {
    const first = (update.prevIds[0] ?? 0) + 1;
    const spaced = update.streamId - first + 1 >= update.deviceIds.length;
    // A log written before devices took a position each: one position for all of them.
    if (!spaced && update.deviceIds.length > 1) resync = true;
    update.deviceIds.forEach((deviceId, i) => {
      latest.delete(deviceId); // re-inserted last: the map stays in stream order
      latest.set(deviceId, spaced ? first + i : update.streamId);
    });
    if (update.crossSigning) signingKeys = true;
  }
  // One EDU per stream ID: an unspaced update keeps its last device (the resync covers it).
  const byStream = new Map<number, string>();
  for (const [deviceId, streamId] of latest) byStream.set(streamId, deviceId);
  let devices = [...byStream].map(([streamId, deviceId]) => ({ deviceId, streamId }))
    .sort((a, b) => a.streamId - b.streamId);
  if (devices.length > MAX_DEVICE_EDUS) {
    devices = devices.slice(devices.length - MAX_DEVICE_EDUS);
    resync = true;
  }
  const lastEdu = resync ? 0 : (mark?.eduStreamId ?? 0);
  return {
    devices,
    firstPrevIds: lastEdu === 0 ? [] : [lastEdu],
    signingKeys,
    mark: {
      streamId: updates[updates.length - 1].streamId,
      // A forced resync with no device EDU to carry it: the next EDU carries it (empty prev_id).
      eduStreamId: devices.length > 0 ? devices[devices.length - 1].streamId : lastEdu,
    },
  };
}

/** Queues local users' device-list and signing-key EDUs after their changes commit. */
export class DeviceListSender {
  readonly #deps: DeviceListSenderDeps;
  /** Passes of one user in this process run one after another (the mark guards processes). */
  readonly #running = new Map<string, Promise<void>>();

  /** A sender over the device-list log, the rooms and the federation outbox. */
  constructor(deps: DeviceListSenderDeps) {
    this.#deps = deps;
  }

  /**
   * After a commit changed the device lists of `userIds`: queue what local users' changes
   * owe other servers. Never rejects: the change is committed, and an EDU not queued now goes
   * with the user's next change (see the module comment).
   */
  async changed(userIds: readonly string[]): Promise<void> {
    if (!this.#deps.enabled) return;
    const local = [...new Set(userIds)].filter((u) => serverNameOf(u) === this.#deps.serverName);
    await Promise.all(local.map((userId) => this.#serialised(userId)));
  }

  #serialised(userId: string): Promise<void> {
    const before = this.#running.get(userId) ?? Promise.resolve();
    const run = before.then(() => this.#send(userId)).catch((error) => {
      (this.#deps.log ?? console.warn)("device lists: queueing EDUs failed", userId, error);
    });
    this.#running.set(userId, run);
    void run.then(() => {
      if (this.#running.get(userId) === run) this.#running.delete(userId);
    });
    return run;
  }

  async #send(userId: string): Promise<void> {
    const deps = this.#deps;
    const destinations = [...await serversSharingRoomWith(deps.store, userId, deps.serverName)];
    if (destinations.length === 0) return;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const pending = await deps.outbound.pending(userId, MAX_PENDING_UPDATES);
      const plan = planDeviceListEdus(pending);
      if (plan === null) return;
      const edus = await this.#contents(userId, plan);
      const parts = this.#parts(destinations, edus);
      if (await deps.outbound.queue(userId, pending.version, plan.mark, parts)) {
        if (parts.length > 0) deps.federation.wake();
        return;
      }
      // Another process moved the mark: it queued those updates; look for newer ones.
      if (parts.length > 1) deps.federation.wake();
    }
    throw new Error(`the device-list mark of ${userId} kept moving`);
  }

  /** The EDUs of `plan` with the devices' and keys' current contents. */
  async #contents(userId: string, plan: DeviceListPlan): Promise<Edu[]> {
    const deviceIds = plan.devices.map((d) => d.deviceId);
    const query = deviceIds.length > 0 || plan.signingKeys
      ? await this.#deps.keysForServers({ [userId]: deviceIds })
      : null;
    const known = deviceIds.length > 0
      ? new Map((await this.#deps.devicesOf(userId)).map((d) => [d.deviceId, d]))
      : new Map<string, KnownDevice>();
    const keysOf = query?.device_keys[userId] ?? {};
    const edus: Edu[] = [];
    let prevIds = plan.firstPrevIds;
    for (const { deviceId, streamId } of plan.devices) {
      const content: JsonObject = {
        user_id: userId,
        device_id: deviceId,
        stream_id: streamId,
        prev_id: prevIds,
      };
      const device = known.get(deviceId);
      if (device === undefined) content.deleted = true;
      else {
        const keys = keysOf[deviceId];
        if (keys !== undefined) {
          const { unsigned: _unsigned, ...signed } = keys;
          content.keys = signed;
        }
      }
      edus.push({ edu_type: "m.device_list_update", content });
      prevIds = [streamId];
    }
    if (plan.signingKeys && query !== null) {
      const content: JsonObject = { user_id: userId };
      const master = query.master_keys[userId];
      const selfSigning = query.self_signing_keys[userId];
      if (master !== undefined) content.master_key = master;
      if (selfSigning !== undefined) content.self_signing_key = selfSigning;
      if (master !== undefined || selfSigning !== undefined) {
        edus.push({ edu_type: "m.signing_key_update", content });
      }
    }
    return edus;
  }

  /** Outbox writes of `edus` for every destination, in commits that fit KV's limits. */
  #parts(destinations: readonly string[], edus: readonly Edu[]): CommitMutation[][] {
    if (edus.length === 0) return [];
    const sizes = edus.map((edu) => JSON.stringify(edu.content).length + 64);
    const parts: CommitMutation[][] = [];
    let batch: { destination: string; edu: Edu }[] = [];
    let bytes = 0;
    const flush = () => {
      if (batch.length === 0) return;
      const mutations = this.#deps.federation.eduMutations(batch);
      if (mutations.length > 0) parts.push(mutations);
      batch = [];
      bytes = 0;
    };
    for (const destination of destinations) {
      edus.forEach((edu, i) => {
        if (batch.length === ENTRIES_PER_COMMIT || bytes + sizes[i] > BYTES_PER_COMMIT) flush();
        batch.push({ destination, edu });
        bytes += sizes[i];
      });
    }
    flush();
    return parts;
  }
}
