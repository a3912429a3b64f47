/**
 * Asking another server for its users' keys (spec, Server-Server API: "End-to-End Encryption":
 * `POST /user/keys/query`, `POST /user/keys/claim`, `GET /user/devices/{userId}`).
 *
 * Nothing a remote server answers is trusted as it comes: it may only speak for its own users,
 * and only for what it was asked. Device keys must name the user and device they are filed
 * under, cross-signing keys the user they are filed under, with the spec's shapes and bounded
 * sizes (the checks `/keys/upload` applies to our own users). A malformed part is dropped and
 * the rest kept, as one bad device must not hide a user's other devices; an answer that is not
 * an object at all, or a status other than 200, is a failure of the whole request.
 */
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import type { FederationResponse, FederationTransport } from "../ports/federation_transport.ts";
import type { RemoteKeyQuerier, RemoteKeyQueryResult } from "../e2ee/key_query.ts";
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import {
  MAX_DEVICE_KEY_ENTRIES,
  MAX_DEVICE_KEYS_BYTES,
  parseKeyMap,
} from "../e2ee/key_upload_validation.ts";
import { checkCrossSigningKeyShape, checkSignaturesShape } from "../e2ee/cross_signing_keys.ts";
import type { CrossSigningUsage } from "../ports/cross_signing_store.ts";

/** A remote user's devices and cross-signing keys, as `GET /user/devices/{userId}` gives them. */
export interface RemoteUserDevices {
  userId: string;
  /** The user's device-list stream position on their server (what `m.device_list_update` counts). */
  streamId: number;
  devices: { deviceId: string; keys?: JsonObject; displayName?: string }[];
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
}

/** What the client needs. */
export interface RemoteKeyClientDeps {
  transport: FederationTransport;
}

/** One-time keys claimed: user ID -> device ID -> `<algorithm>:<key_id>` -> key. */
export interface RemoteClaimResult {
  one_time_keys: Record<string, Record<string, Record<string, JsonValue>>>;
}

/** Most devices kept for one user from one answer (Synapse has no cap; real users have few). */
export const MAX_REMOTE_DEVICES_PER_USER = 1000;
/** Longest device ID kept (device IDs end up in storage keys). */
export const MAX_REMOTE_DEVICE_ID_LENGTH = 255;
/** Longest display name kept (bytes). */
export const MAX_REMOTE_DISPLAY_NAME_BYTES = 1024;
/** Largest `/user/devices` answer taken (1,000 devices of ordinary keys fit many times over). */
export const MAX_USER_DEVICES_RESPONSE_BYTES = 8 * 1024 * 1024;
/**
 * Largest answer to a key query, per user asked about (a user's devices' keys are a few KiB;
 * a thousand devices fit); without it a server could answer one user with 64 MiB.
 */
const QUERY_RESPONSE_BYTES_PER_USER = 1024 * 1024;
/** Largest answer to a claim, per device asked about (a signed key is ~200 bytes). */
const CLAIM_RESPONSE_BYTES_PER_DEVICE = 8 * 1024;
/** Default wait of `userDevices` (a resync). */
export const USER_DEVICES_TIMEOUT_MS = 10_000;

const encoder = new TextEncoder();

/** Thrown when a server answers but not usably (a status other than 200, a malformed answer). */
export class RemoteKeyError extends Error {
  /** `server` answered `status` (0 when the body was the problem). */
  constructor(readonly server: string, readonly status: number, message: string) {
    super(`${server}: ${message}`);
    this.name = "RemoteKeyError";
  }
}

/** Key queries, one-time key claims and device-list resyncs against other servers. */
export class RemoteKeyClient implements RemoteKeyQuerier {
  /** Build over the federation transport. */
  constructor(private readonly deps: RemoteKeyClientDeps) {}

  /**
   * `server`'s keys for `deviceKeys` (its users -> device IDs, [] for all). Users of other
   * servers are not asked; what comes back is kept only for users and devices asked about.
   * Throws (FederationUnreachable or RemoteKeyError) when there is no usable answer.
   */
  async query(
    server: string,
    deviceKeys: Record<string, string[]>,
    timeoutMs: number,
  ): Promise<RemoteKeyQueryResult> {
    const asked: Record<string, string[]> = {};
    for (const [userId, deviceIds] of Object.entries(deviceKeys)) {
      if (isUserOf(userId, server)) asked[userId] = deviceIds;
    }
    const result: Required<
      Pick<RemoteKeyQueryResult, "device_keys" | "master_keys" | "self_signing_keys">
    > = {
      device_keys: {},
      master_keys: {},
      self_signing_keys: {},
    };
    if (Object.keys(asked).length === 0) return result;
    const body = await this.#call(server, {
      method: "POST",
      path: "/_matrix/federation/v1/user/keys/query",
      body: { device_keys: asked },
      timeoutMs,
      maxResponseBytes: 64 * 1024 + Object.keys(asked).length * QUERY_RESPONSE_BYTES_PER_USER,
    });
    const answered = isJsonObject(body.device_keys) ? body.device_keys : {};
    const masters = isJsonObject(body.master_keys) ? body.master_keys : {};
    const selfSignings = isJsonObject(body.self_signing_keys) ? body.self_signing_keys : {};
    for (const [userId, deviceIds] of Object.entries(asked)) {
      const wanted = deviceIds.length > 0 ? new Set(deviceIds) : undefined;
      const devices = answered[userId];
      if (isJsonObject(devices)) {
        const out: Record<string, JsonObject> = {};
        let kept = 0;
        for (const [deviceId, keys] of Object.entries(devices)) {
          if (kept >= MAX_REMOTE_DEVICES_PER_USER) break;
          if (wanted !== undefined && !wanted.has(deviceId)) continue;
          const checked = checkedDeviceKeys(keys, userId, deviceId);
          if (checked === undefined) continue;
          out[deviceId] = checked;
          kept++;
        }
        result.device_keys[userId] = out;
      }
      const master = checkedCrossSigningKey(masters[userId], userId, "master");
      if (master !== undefined) result.master_keys[userId] = master;
      const selfSigning = checkedCrossSigningKey(selfSignings[userId], userId, "self_signing");
      if (selfSigning !== undefined) result.self_signing_keys[userId] = selfSigning;
    }
    return result;
  }

  /**
   * Claim one-time keys on `server` (`oneTimeKeys`: its users -> device ID -> algorithm). Kept:
   * at most one well-formed key per device asked about, of the algorithm asked for.
   * Throws (FederationUnreachable or RemoteKeyError) when there is no usable answer.
   */
  async claim(
    server: string,
    oneTimeKeys: Record<string, Record<string, string>>,
    timeoutMs: number,
  ): Promise<RemoteClaimResult> {
    const asked: Record<string, Record<string, string>> = {};
    for (const [userId, devices] of Object.entries(oneTimeKeys)) {
      if (isUserOf(userId, server)) asked[userId] = devices;
    }
    const result: RemoteClaimResult = { one_time_keys: {} };
    if (Object.keys(asked).length === 0) return result;
    const devices = Object.values(asked).reduce((n, d) => n + Object.keys(d).length, 0);
    const body = await this.#call(server, {
      method: "POST",
      path: "/_matrix/federation/v1/user/keys/claim",
      body: { one_time_keys: asked },
      timeoutMs,
      maxResponseBytes: 64 * 1024 + devices * CLAIM_RESPONSE_BYTES_PER_DEVICE,
    });
    const answered = isJsonObject(body.one_time_keys) ? body.one_time_keys : {};
    for (const [userId, devices] of Object.entries(asked)) {
      const byDevice = answered[userId];
      if (!isJsonObject(byDevice)) continue;
      const out: Record<string, Record<string, JsonValue>> = {};
      for (const [deviceId, algorithm] of Object.entries(devices)) {
        const keys = byDevice[deviceId];
        if (!isJsonObject(keys)) continue;
        const key = oneKeyOf(keys, algorithm);
        if (key !== undefined) out[deviceId] = key;
      }
      if (Object.keys(out).length > 0) result.one_time_keys[userId] = out;
    }
    return result;
  }

  /**
   * All of `userId`'s devices and cross-signing keys from its server (a device-list resync).
   * Throws (FederationUnreachable or RemoteKeyError) when `userId` is not a user of a server
   * or the answer is unusable (wrong user, no stream ID, no device list); a malformed device
   * entry is dropped, and a device whose keys are malformed is listed without them.
   */
  async userDevices(
    server: string,
    userId: string,
    timeoutMs = USER_DEVICES_TIMEOUT_MS,
  ): Promise<RemoteUserDevices> {
    if (!isUserOf(userId, server)) {
      throw new RemoteKeyError(server, 0, `${userId} is not a user of ${server}`);
    }
    const body = await this.#call(server, {
      method: "GET",
      path: `/_matrix/federation/v1/user/devices/${encodeURIComponent(userId)}`,
      timeoutMs,
      maxResponseBytes: MAX_USER_DEVICES_RESPONSE_BYTES,
    });
    if (body.user_id !== userId) {
      throw new RemoteKeyError(server, 0, `answered for another user than ${userId}`);
    }
    const streamId = body.stream_id;
    if (typeof streamId !== "number" || !Number.isSafeInteger(streamId) || streamId < 0) {
      throw new RemoteKeyError(server, 0, "answered without a valid stream_id");
    }
    if (!Array.isArray(body.devices)) {
      throw new RemoteKeyError(server, 0, "answered without a device list");
    }
    const devices: RemoteUserDevices["devices"] = [];
    const seen = new Set<string>();
    for (const entry of body.devices) {
      if (devices.length >= MAX_REMOTE_DEVICES_PER_USER) break;
      if (!isJsonObject(entry)) continue;
      const deviceId = entry.device_id;
      if (!isValidDeviceId(deviceId) || seen.has(deviceId)) continue;
      const device: RemoteUserDevices["devices"][number] = { deviceId };
      // Keys that are not this device's own are dropped; the device itself is still listed
      // (its server says it exists), without keys nobody could trust.
      const keys = checkedDeviceKeys(entry.keys, userId, deviceId);
      if (keys !== undefined) device.keys = keys;
      const displayName = checkedRemoteDisplayName(entry.device_display_name);
      if (displayName !== undefined) device.displayName = displayName;
      seen.add(deviceId);
      devices.push(device);
    }
    const out: RemoteUserDevices = { userId, streamId, devices };
    const master = checkedCrossSigningKey(body.master_key, userId, "master");
    if (master !== undefined) out.masterKey = master;
    const selfSigning = checkedCrossSigningKey(body.self_signing_key, userId, "self_signing");
    if (selfSigning !== undefined) out.selfSigningKey = selfSigning;
    return out;
  }

  async #call(
    server: string,
    request: {
      method: "GET" | "POST";
      path: string;
      body?: JsonObject;
      timeoutMs: number;
      maxResponseBytes?: number;
    },
  ): Promise<JsonObject> {
    // FederationUnreachable passes through: the caller reports the server as failed.
    const response: FederationResponse = await this.deps.transport.request({
      destination: server,
      ...request,
    });
    if (response.status !== 200) {
      const body = response.body;
      const detail = isJsonObject(body) && typeof body.error === "string"
        ? `: ${body.error.slice(0, 200)}`
        : "";
      throw new RemoteKeyError(server, response.status, `answered ${response.status}${detail}`);
    }
    if (!isJsonObject(response.body)) {
      throw new RemoteKeyError(server, 0, "answered with something other than a JSON object");
    }
    return response.body;
  }
}

/** True when `userId` is a valid user ID of `server`. */
function isUserOf(userId: string, server: string): boolean {
  const parsed = parseUserId(userId);
  return parsed.ok && parsed.value.serverName === server;
}

function isValidDeviceId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 &&
    value.length <= MAX_REMOTE_DEVICE_ID_LENGTH;
}

/** A display name another server sent: a string of at most MAX_REMOTE_DISPLAY_NAME_BYTES. */
export function checkedRemoteDisplayName(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  return encoder.encode(value).byteLength <= MAX_REMOTE_DISPLAY_NAME_BYTES ? value : undefined;
}

/**
 * Device keys another server files under `userId`/`deviceId` (in a key query or /user/devices
 * answer, or an `m.device_list_update` EDU): an object naming that user and device, with
 * string-valued `keys`, a list of string `algorithms` and a `signatures` map, bounded in size;
 * its signed part (`unsigned` left out), undefined when not. Looser than the upload checks on
 * purpose: key and algorithm names are not checked, as other servers store what their clients
 * upload (SyTest's remote sends `"keys": {"c": ...}`); every client verifies a device's
 * signatures itself before trusting its keys. What must hold is what we file it under: the user
 * and device it names.
 */
export function checkedRemoteDeviceKeys(
  value: unknown,
  userId: string,
  deviceId: string,
): JsonObject | undefined {
  if (!isJsonObject(value)) return undefined;
  const { unsigned: _unsigned, ...signed } = value;
  if (signed.user_id !== userId || signed.device_id !== deviceId) return undefined;
  const { algorithms, keys, signatures } = signed;
  if (
    !Array.isArray(algorithms) || algorithms.length > MAX_DEVICE_KEY_ENTRIES ||
    !algorithms.every((a) => typeof a === "string")
  ) return undefined;
  if (
    !isJsonObject(keys) || Object.keys(keys).length > MAX_DEVICE_KEY_ENTRIES ||
    !Object.values(keys).every((k) => typeof k === "string")
  ) return undefined;
  try {
    if (signatures !== undefined) checkSignaturesShape(signatures, "device keys");
    if (canonicalJsonBytes(signed).byteLength > MAX_DEVICE_KEYS_BYTES) return undefined;
  } catch {
    return undefined;
  }
  return signed;
}

/**
 * A queried device's keys: checked as `checkedRemoteDeviceKeys`, with `unsigned` cut down to
 * the display name (the only part clients read); undefined when not.
 */
function checkedDeviceKeys(
  value: unknown,
  userId: string,
  deviceId: string,
): JsonObject | undefined {
  if (!isValidDeviceId(deviceId)) return undefined;
  const signed = checkedRemoteDeviceKeys(value, userId, deviceId);
  if (signed === undefined) return undefined;
  const { unsigned } = value as JsonObject;
  const displayName = isJsonObject(unsigned)
    ? checkedRemoteDisplayName(unsigned.device_display_name)
    : undefined;
  return displayName === undefined
    ? signed
    : { ...signed, unsigned: { device_display_name: displayName } };
}

/**
 * A cross-signing key another server sent for `userId` with the spec's shape for `usage`;
 * undefined when absent or malformed.
 */
export function checkedCrossSigningKey(
  value: unknown,
  userId: string,
  usage: CrossSigningUsage,
): JsonObject | undefined {
  if (value === undefined) return undefined;
  try {
    checkCrossSigningKeyShape(value, userId, usage);
  } catch {
    return undefined;
  }
  return value as JsonObject;
}

/** The one well-formed key of `algorithm` in a claimed device's `{name: key}` map, if any. */
function oneKeyOf(keys: JsonObject, algorithm: string): Record<string, JsonValue> | undefined {
  for (const [name, key] of Object.entries(keys)) {
    if (!name.startsWith(`${algorithm}:`)) continue;
    try {
      parseKeyMap({ [name]: key }, "one_time_keys", 1); // shape and size (4 KiB)
    } catch {
      continue;
    }
    return { [name]: key };
  }
  return undefined;
}
