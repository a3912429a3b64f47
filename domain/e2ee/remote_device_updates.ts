/**
 * The rules of following another server's device-list stream (spec, Server-Server API:
 * "Device Management"), as pure functions over a cached list: whether an `m.device_list_update`
 * was already seen, can be applied, or shows a gap that only a full resync
 * (`GET /user/devices/{userId}`) closes, and what the cache holds afterwards.
 *
 * - stream_id below the cached position: already seen (a resync or the chain covered it);
 * - stream_id at the position: seen when the position came from a resync; else it is another
 *   device changed under the same stream ID (a server may number one change of several devices
 *   once), applied like the next update;
 * - otherwise applied when it names prev_ids and every one is known: at or below the last
 *   resync's position (the list fetched then includes every change up to it: a server whose
 *   stream positions are global, as Synapse's are, names in prev_id the last update it sent us,
 *   which may lie below the position its /user/devices reported), or an update applied after
 *   it (earlier updates of the same transaction are applied before it);
 * - no cache, a stale cache, an empty prev_id or an unknown prev_id: resync.
 */
import type { JsonObject } from "../protocol/json.ts";
import type {
  CachedRemoteDevice,
  LoggedRemoteChange,
  RemoteDeviceList,
} from "../ports/remote_device_store.ts";

/** One parsed `m.device_list_update`. */
export interface DeviceListUpdateEdu {
  userId: string;
  deviceId: string;
  streamId: number;
  prevIds: number[];
  deleted: boolean;
  displayName?: string;
  keys?: JsonObject;
}

/** A user's devices as their server lists them (`GET /user/devices`). */
export interface RemoteDeviceSnapshot {
  userId: string;
  streamId: number;
  devices: { deviceId: string; keys?: JsonObject; displayName?: string }[];
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
}

/** What to do with an update. */
export type UpdateDecision = "seen" | "apply" | "resync";

/** Stream positions remembered as known (prev_ids name the last one or few). */
export const MAX_KNOWN_STREAM_IDS = 32;

/**
 * Largest cached list (UTF-8 JSON bytes); a user with more (a bot making a device per login)
 * is not cached and every query asks their server, as Synapse does past 1,000 devices.
 */
export const MAX_CACHED_LIST_BYTES = 400_000;

/** Devices a logged change names at most (the log only has to say the user changed). */
const MAX_LOGGED_DEVICE_IDS = 64;

/** The decision for `update` against the cache `current` (see the module comment). */
export function decideUpdate(
  current: RemoteDeviceList | null,
  update: Pick<DeviceListUpdateEdu, "streamId" | "prevIds">,
): UpdateDecision {
  if (current === null || current.stale) return "resync";
  if (update.streamId < current.streamId) return "seen";
  if (update.streamId === current.streamId && current.resyncedAt === current.streamId) {
    return "seen";
  }
  if (update.prevIds.length === 0) return "resync";
  const known = new Set(current.known);
  const covered = (id: number) => id <= current.resyncedAt || known.has(id);
  return update.prevIds.every(covered) ? "apply" : "resync";
}

/** The cache after applying `update` (decided "apply"). */
export function withUpdate(
  current: RemoteDeviceList,
  update: DeviceListUpdateEdu,
): RemoteDeviceList {
  const devices = { ...current.devices };
  if (update.deleted) delete devices[update.deviceId];
  else {
    // The update carries the device's whole state: what it leaves out is gone (a cleared name).
    const device: CachedRemoteDevice = {};
    if (update.keys !== undefined) device.keys = update.keys;
    if (update.displayName !== undefined) device.displayName = update.displayName;
    devices[update.deviceId] = device;
  }
  const known = [...current.known.filter((id) => id !== update.streamId), update.streamId];
  return {
    ...current,
    streamId: Math.max(current.streamId, update.streamId),
    known: known.slice(-MAX_KNOWN_STREAM_IDS),
    devices,
  };
}

/** What an applied update tells local clients. */
export function loggedUpdate(update: DeviceListUpdateEdu): LoggedRemoteChange {
  return {
    deviceIds: [update.deviceId],
    deleted: update.deleted ? [update.deviceId] : [],
    crossSigning: false,
  };
}

/** The cache a resync gives. */
export function listFromSnapshot(snapshot: RemoteDeviceSnapshot): RemoteDeviceList {
  const devices: Record<string, CachedRemoteDevice> = {};
  for (const d of snapshot.devices) {
    const device: CachedRemoteDevice = {};
    if (d.keys !== undefined) device.keys = d.keys;
    if (d.displayName !== undefined) device.displayName = d.displayName;
    devices[d.deviceId] = device;
  }
  const list: RemoteDeviceList = {
    userId: snapshot.userId,
    streamId: snapshot.streamId,
    resyncedAt: snapshot.streamId,
    known: [snapshot.streamId],
    devices,
  };
  if (snapshot.masterKey !== undefined) list.masterKey = snapshot.masterKey;
  if (snapshot.selfSigningKey !== undefined) list.selfSigningKey = snapshot.selfSigningKey;
  return list;
}

/** What replacing `before` (null: nothing cached) with `after` tells local clients. */
export function loggedReplacement(
  before: RemoteDeviceList | null,
  after: RemoteDeviceList,
): LoggedRemoteChange {
  const old = before?.devices ?? {};
  const changed = Object.keys(after.devices).filter((id) =>
    JSON.stringify(old[id]) !== JSON.stringify(after.devices[id])
  );
  const deleted = Object.keys(old).filter((id) => !(id in after.devices));
  const crossSigning = JSON.stringify(before?.masterKey) !== JSON.stringify(after.masterKey) ||
    JSON.stringify(before?.selfSigningKey) !== JSON.stringify(after.selfSigningKey);
  return {
    deviceIds: [...changed, ...deleted].slice(0, MAX_LOGGED_DEVICE_IDS),
    deleted: deleted.slice(0, MAX_LOGGED_DEVICE_IDS),
    crossSigning,
  };
}

/** Whether `list` is small enough to cache (MAX_CACHED_LIST_BYTES). */
export function cacheable(list: RemoteDeviceList): boolean {
  return new TextEncoder().encode(JSON.stringify(list)).byteLength <= MAX_CACHED_LIST_BYTES;
}
