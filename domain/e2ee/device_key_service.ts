/**
 * Device keys, one-time keys and fallback keys (spec: "Key management API"): `/keys/upload`,
 * `/keys/claim`, the counts sync reports, and cleanup when devices are deleted.
 *
 * A device's identity keys never change once uploaded: different ones for the same device ID
 * are refused (a client that lost its keys must log in as a new device), while a re-upload of
 * the same keys may add signatures. Storing them records a device-list update in the same
 * commit, after which the user's and their room-mates' syncs are woken.
 */
import { canonicalJson } from "../protocol/canonical_json.ts";
import { withDeadline } from "../concurrency.ts";
import { invalidParam } from "../errors.ts";
import { parseDeviceId, parseUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { DeviceKeysMerge, DeviceKeyStore, KeyUpload } from "../ports/device_key_store.ts";
import type { DeviceListNotifier } from "./device_list_notifier.ts";
import {
  checkDeviceKeys,
  isValidAlgorithm,
  MAX_DEVICE_KEYS_BYTES,
  MAX_ONE_TIME_KEYS_PER_UPLOAD,
  parseFallbackKeys,
  parseKeyMap,
} from "./key_upload_validation.ts";

/** Most unclaimed one-time keys one device may hold (sync counts them on every request). */
export const MAX_STORED_ONE_TIME_KEYS = 1000;
/**
 * Most fallback-key algorithms one device may hold: each upload replaces one key per algorithm,
 * but new algorithm names would otherwise pile up, and every sync lists them.
 */
export const MAX_FALLBACK_ALGORITHMS = 32;
/** Most (user, device) pairs one claim may name. */
export const MAX_CLAIMED_DEVICES = 10_000;
/** Claims of one request running at once. */
const CLAIM_CONCURRENCY = 16;
/** The algorithm clients ask the count of even when the device holds none. */
const SIGNED_CURVE25519 = "signed_curve25519";

/** A `/keys/upload` body after the edge checked it is an object. */
export interface KeyUploadRequest {
  device_keys?: unknown;
  one_time_keys?: unknown;
  fallback_keys?: unknown;
  /** MSC2732's name for `fallback_keys`, which older clients still send. */
  "org.matrix.msc2732.fallback_keys"?: unknown;
}

/** The `/keys/upload` response. */
export interface KeyUploadResponse {
  one_time_key_counts: Record<string, number>;
}

/** `/keys/claim`'s `one_time_keys`: user ID -> device ID -> algorithm. */
export type ClaimQuery = Record<string, Record<string, string>>;

/** The `/keys/claim` response. */
export interface ClaimResponse {
  /** user ID -> device ID -> `<algorithm>:<key_id>` -> key. */
  one_time_keys: Record<string, Record<string, Record<string, JsonValue>>>;
  /** Server name -> why its users' keys could not be claimed. */
  failures: Record<string, JsonObject>;
}

/** Claims one-time keys of another server's users (federation's /user/keys/claim). */
export interface RemoteKeyClaimer {
  /** Throws when `server` gives no usable answer within `timeoutMs`. */
  claim(
    server: string,
    oneTimeKeys: ClaimQuery,
    timeoutMs: number,
  ): Promise<{ one_time_keys: ClaimResponse["one_time_keys"] }>;
}

/** What the service runs on. */
export interface DeviceKeyServiceDeps {
  store: DeviceKeyStore;
  /** This server's name: users of other servers are claimed over federation. */
  serverName: string;
  deviceListNotifier: Pick<DeviceListNotifier, "changed">;
  /**
   * The user's devices. When given, claims skip devices that no longer exist, and an upload
   * checks after its commit that the device still exists, dropping what it stored if not: the
   * request was authenticated before a concurrent deletion, whose removal hook may have run
   * before this commit and found nothing.
   */
  devices?: { getDevice(userId: string, deviceId: string): Promise<unknown | null> };
  /** Claims on other servers; without it their users' keys are reported in `failures`. */
  remote?: RemoteKeyClaimer;
}

/** The device key use cases. */
export class DeviceKeyService {
  /** Over `deps.store`, waking syncs through `deps.deviceListNotifier`. */
  constructor(private readonly deps: DeviceKeyServiceDeps) {}

  /** Store `userId`'s device `deviceId`'s uploaded keys; returns its one-time key counts. */
  async upload(
    userId: string,
    deviceId: string,
    request: KeyUploadRequest,
  ): Promise<KeyUploadResponse> {
    return await this.storeUpload(
      userId,
      deviceId,
      this.checkUpload(userId, deviceId, request),
    );
  }

  /**
   * Every check of an upload that needs no stored state (ownership, shapes, sizes),
   * writing nothing; `storeUpload` stores the result. Lets a caller that creates the device
   * first (a dehydrated device) refuse bad keys before it writes anything.
   */
  checkUpload(
    userId: string,
    deviceId: string,
    request: KeyUploadRequest,
  ): KeyUpload {
    const upload: KeyUpload = {
      oneTimeKeys: request.one_time_keys === undefined
        ? []
        : parseKeyMap(request.one_time_keys, "one_time_keys", MAX_ONE_TIME_KEYS_PER_UPLOAD),
      fallbackKeys: fallbackKeysOf(request),
    };
    if (request.device_keys !== undefined) {
      const deviceKeys = checkDeviceKeys(request.device_keys, userId, deviceId);
      upload.deviceKeys = mergeDeviceKeys(deviceKeys);
    }
    return upload;
  }

  /**
   * Store an upload `checkUpload` accepted for the same device, with the checks against what is
   * stored (one-time key cap and conflicts, replaced identity keys); returns the counts.
   */
  async storeUpload(
    userId: string,
    deviceId: string,
    upload: KeyUpload,
  ): Promise<KeyUploadResponse> {
    const { store } = this.deps;
    if (upload.oneTimeKeys.length > 0) {
      const held = Object.values(await store.oneTimeKeyCounts(userId, deviceId))
        .reduce((sum, n) => sum + n, 0);
      if (held + upload.oneTimeKeys.length > MAX_STORED_ONE_TIME_KEYS) {
        throw invalidParam(
          `A device may hold at most ${MAX_STORED_ONE_TIME_KEYS} unclaimed one-time keys (it holds ${held})`,
        );
      }
    }
    if (upload.fallbackKeys.length > 0) {
      const held = new Set(await store.fallbackKeyAlgorithms(userId, deviceId));
      const added = upload.fallbackKeys.filter((k) => !held.has(k.algorithm)).length;
      if (held.size + added > MAX_FALLBACK_ALGORITHMS) {
        throw invalidParam(
          `A device may hold fallback keys of at most ${MAX_FALLBACK_ALGORITHMS} algorithms`,
        );
      }
    }
    if (upload.deviceKeys || upload.oneTimeKeys.length > 0 || upload.fallbackKeys.length > 0) {
      const outcome = await store.upload(userId, deviceId, upload);
      if (outcome.conflictingOneTimeKeys.length > 0) {
        throw invalidParam(
          `One-time key ${outcome.conflictingOneTimeKeys[0]} already exists with other content`,
        );
      }
      if (outcome.deviceListVersionstamp !== null) {
        await this.#wake(userId, outcome.deviceListVersionstamp);
      }
      // Either this read sees the device gone, or its deletion commits after it and the
      // removal hook, which runs after that, finds these keys.
      if (this.deps.devices && await this.deps.devices.getDevice(userId, deviceId) === null) {
        await this.devicesRemoved(userId, [deviceId]);
      }
    }
    return { one_time_key_counts: await this.oneTimeKeyCounts(userId, deviceId) };
  }

  /**
   * Claim one key per named device: its oldest one-time key of the algorithm, else its fallback
   * key. Unknown users and devices, or devices with neither key, are left out of the response.
   * Other servers' users are claimed from their servers (one request per server, all at once),
   * waiting at most `timeoutMs`; a server that gives no usable answer in time is listed in
   * `failures` and its users' keys are left out. Local claims never wait.
   */
  async claim(query: ClaimQuery, timeoutMs: number): Promise<ClaimResponse> {
    const local: { userId: string; deviceId: string; algorithm: string }[] = [];
    const remoteServers = new Map<string, ClaimQuery>();
    let remoteDevices = 0;
    for (const [userId, devices] of Object.entries(query)) {
      const user = parseUserId(userId);
      if (!user.ok) throw invalidParam(user.reason);
      if (!isJsonObject(devices)) throw invalidParam(`Devices of ${userId} must be an object`);
      for (const [deviceId, algorithm] of Object.entries(devices)) {
        const device = parseDeviceId(deviceId);
        if (!device.ok) throw invalidParam(device.reason);
        if (typeof algorithm !== "string" || !isValidAlgorithm(algorithm)) {
          throw invalidParam(`Invalid algorithm for ${userId} ${deviceId}`);
        }
        const server = user.value.serverName;
        if (server === this.deps.serverName) {
          local.push({ userId, deviceId, algorithm });
        } else {
          const users = remoteServers.get(server) ?? remoteServers.set(server, {}).get(server)!;
          (users[userId] ??= {})[deviceId] = algorithm;
          remoteDevices++;
        }
        if (local.length + remoteDevices > MAX_CLAIMED_DEVICES) {
          throw invalidParam(`A claim may name at most ${MAX_CLAIMED_DEVICES} devices`);
        }
      }
    }
    const response: ClaimResponse = { one_time_keys: {}, failures: {} };
    const remoteClaims = [...remoteServers].map(([server, users]) =>
      this.#claimRemote(server, users, timeoutMs, response)
    );
    await forEachLimited(local, CLAIM_CONCURRENCY, async ({ userId, deviceId, algorithm }) => {
      // A deleted device's keys may outlive it until its removal hook has run (or re-runs after
      // a crash): the device is unknown, so nothing is handed out for it.
      if (this.deps.devices && await this.deps.devices.getDevice(userId, deviceId) === null) return;
      const claimed = await this.deps.store.claim(userId, deviceId, algorithm);
      if (claimed === null) return;
      const devices = response.one_time_keys[userId] ??= {};
      devices[deviceId] = { [`${claimed.algorithm}:${claimed.keyId}`]: claimed.key };
    });
    await Promise.all(remoteClaims);
    return response;
  }

  /** Claim `users`' keys on `server` into `response`, or list the server in its failures. */
  async #claimRemote(
    server: string,
    users: ClaimQuery,
    timeoutMs: number,
    response: ClaimResponse,
  ): Promise<void> {
    const remote = this.deps.remote;
    if (remote === undefined) {
      response.failures[server] = {
        status: 503,
        message: "Claiming keys on other servers is not enabled on this server",
      };
      return;
    }
    try {
      // The transport's deadline bounds each attempt; this one bounds the whole wait (name
      // resolution included), as the client asked.
      const answer = await withDeadline(remote.claim(server, users, timeoutMs), timeoutMs);
      if (answer === undefined) {
        response.failures[server] = { status: 504, message: `${server} did not answer in time` };
        return;
      }
      // The claimer keeps only `server`'s users, so nothing local is overwritten here.
      for (const [userId, devices] of Object.entries(answer.one_time_keys)) {
        response.one_time_keys[userId] = devices;
      }
    } catch (error) {
      response.failures[server] = {
        status: 503,
        message: error instanceof Error ? error.message : String(error),
      };
    }
  }

  /** The device's unclaimed one-time keys by algorithm, `signed_curve25519` always included. */
  async oneTimeKeyCounts(userId: string, deviceId: string): Promise<Record<string, number>> {
    const counts = await this.deps.store.oneTimeKeyCounts(userId, deviceId);
    return { [SIGNED_CURVE25519]: 0, ...counts };
  }

  /** Algorithms of the device's fallback keys no claim has handed out yet. */
  unusedFallbackKeyTypes(userId: string, deviceId: string): Promise<string[]> {
    return this.deps.store.unusedFallbackKeyTypes(userId, deviceId);
  }

  /**
   * The devices-removed hook: drop the devices' keys; devices that had device keys get a
   * device-list update marking them deleted, and the user's and room-mates' syncs are woken.
   */
  async devicesRemoved(userId: string, deviceIds: string[]): Promise<void> {
    // Devices without keys still leave the user's device list, which clients show.
    const versionstamp = await this.deps.store.removeDevices(userId, deviceIds) ??
      await this.deps.store.announceDevices(userId, { deleted: deviceIds });
    if (versionstamp !== null) await this.#wake(userId, versionstamp);
  }

  /** The device-added hook (a new login): the user's device list changed. */
  async deviceAdded(userId: string, deviceId: string): Promise<void> {
    const versionstamp = await this.deps.store.announceDevices(userId, { deviceIds: [deviceId] });
    if (versionstamp !== null) await this.#wake(userId, versionstamp);
  }

  /**
   * The device-renamed hook: key queries and device lists show a device's display name, so
   * room-mates re-query when it changes (as they do in Synapse), keys or not.
   */
  async deviceRenamed(userId: string, deviceId: string): Promise<void> {
    const versionstamp = await this.deps.store.announceDeviceChange(userId, deviceId) ??
      await this.deps.store.announceDevices(userId, { deviceIds: [deviceId] });
    if (versionstamp !== null) await this.#wake(userId, versionstamp);
  }

  async #wake(userId: string, versionstamp: string): Promise<void> {
    try {
      await this.deps.deviceListNotifier.changed([userId], versionstamp);
    } catch (error) {
      // The change is committed; a missed wake-up only delays it to the next sync.
      console.warn("device keys: device-list wake-up failed", userId, error);
    }
  }
}

/** `fallback_keys`, or MSC2732's unstable name when the stable one is absent. */
function fallbackKeysOf(request: KeyUploadRequest) {
  if (request.fallback_keys !== undefined) {
    return parseFallbackKeys(request.fallback_keys, "fallback_keys");
  }
  const unstable = request["org.matrix.msc2732.fallback_keys"];
  if (unstable !== undefined) {
    return parseFallbackKeys(unstable, "org.matrix.msc2732.fallback_keys");
  }
  return [];
}

/**
 * How uploaded device keys meet the stored ones: stored as they are the first time; refused when
 * their identity keys differ; when only signatures differ, the union of both signature sets is
 * kept (null when that adds nothing); when the device re-signed other fields, the new object.
 */
export function mergeDeviceKeys(uploaded: JsonObject): DeviceKeysMerge {
  return (stored) => {
    if (stored === null) return uploaded;
    if (canonicalJson(stored.keys) !== canonicalJson(uploaded.keys)) {
      throw invalidParam(
        "This device already has different identity keys; log in as a new device to use new keys",
      );
    }
    const { signatures: storedSignatures, ...storedSigned } = stored;
    const { signatures: uploadedSignatures, ...uploadedSigned } = uploaded;
    if (canonicalJson(storedSigned) !== canonicalJson(uploadedSigned)) return uploaded;
    const signatures = mergeSignatures(storedSignatures, uploadedSignatures);
    const merged = { ...stored, signatures };
    if (canonicalJson(merged) === canonicalJson(stored)) return null;
    if (new TextEncoder().encode(canonicalJson(merged)).byteLength > MAX_DEVICE_KEYS_BYTES) {
      throw invalidParam(
        `device_keys with its stored signatures is over ${MAX_DEVICE_KEYS_BYTES} bytes`,
      );
    }
    return merged;
  };
}

function mergeSignatures(a: JsonValue | undefined, b: JsonValue | undefined): JsonObject {
  const out: JsonObject = {};
  for (const source of [a, b]) {
    if (!isJsonObject(source)) continue;
    for (const [user, byKey] of Object.entries(source)) {
      if (!isJsonObject(byKey)) continue;
      out[user] = { ...(isJsonObject(out[user]) ? out[user] : {}), ...byKey };
    }
  }
  return out;
}

/** Run `task` over `items`, at most `limit` at a time. */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
