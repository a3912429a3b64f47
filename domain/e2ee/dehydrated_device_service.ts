/**
 * Dehydrated devices (MSC3814, unstable `org.matrix.msc3814.v1`): a user's one device that no
 * client runs, created by one of their clients with its keys and an encrypted copy of its
 * private keys (`device_data`, opaque here). Other users' clients share room keys with it like
 * with any device; a new client of the user later reads `device_data`, decrypts it with a key
 * from secret storage, and pages through the device's to-device inbox to collect those keys.
 *
 * Behaviour follows Synapse: the device is an ordinary device record (listed by `/devices` and
 * `/keys/query`) except that it has no tokens and logins cannot take it over; uploading a new
 * one deletes the previous one through `AccountService.deleteDevices`, so every devices-removed
 * hook (keys with their device-list update, to-device inbox, signatures) runs for it; reading
 * its inbox deletes nothing, so an interrupted rehydration can start again, and the inbox goes
 * when the device is replaced or deleted.
 */
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { badJson, forbidden, invalidParam, missingParam, notFound, tooLarge } from "../errors.ts";
import { parseDeviceId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { AccountService } from "../accounts/account_service.ts";
import type { ToDeviceEvent, ToDeviceStore } from "../ports/to_device_store.ts";
import type { DeviceKeyService, KeyUploadRequest } from "./device_key_service.ts";

/** Largest `device_data`, as canonical JSON (rust-sdk's pickle with 50 one-time keys is ~3 KB). */
export const MAX_DEVICE_DATA_BYTES = 32_768;
/** Messages per page of the inbox when the client names no limit (Synapse's default). */
export const DEFAULT_EVENTS_LIMIT = 100;
/** Most messages one page hands out: each may be up to 64 KiB. */
export const MAX_EVENTS_LIMIT = 100;
/** Rounds of "delete the previous device, create ours" before giving up on concurrent PUTs. */
const MAX_CREATE_ATTEMPTS = 8;
/** The inbox position before every message: a `next_batch` for an inbox read from its start. */
const INBOX_START = "0".repeat(20);
const BATCH_TOKEN = /^d([0-9a-f]{20})$/;

/** A `PUT /dehydrated_device` body after the edge checked its shape. */
export interface DehydratedDeviceUpload {
  deviceId: string;
  /** Checked here: an object with a string `algorithm`. */
  deviceData: unknown;
  displayName?: string;
  /** `device_keys` (required here), `one_time_keys`, `fallback_keys`, as for `/keys/upload`. */
  keys: KeyUploadRequest;
}

/** One page of the dehydrated device's inbox. */
export interface DehydratedDeviceEvents {
  events: ToDeviceEvent[];
  /** Where the next page starts (pass it back as `from` / `next_batch`). */
  nextBatch: string;
  /** Whether messages follow this page. */
  more: boolean;
}

/** What the service runs on. */
export interface DehydratedDeviceServiceDeps {
  accounts: Pick<
    AccountService,
    "dehydratedDevice" | "createDehydratedDevice" | "deleteDevices" | "getDevice"
  >;
  deviceKeys: Pick<DeviceKeyService, "checkUpload" | "storeUpload">;
  inbox: Pick<ToDeviceStore, "readInbox">;
}

/** The dehydrated-device use cases. */
export class DehydratedDeviceService {
  /** Over the account service, the device-key service and the to-device inboxes. */
  constructor(private readonly deps: DehydratedDeviceServiceDeps) {}

  /**
   * Make `upload` the user's dehydrated device, replacing the previous one. Everything that can
   * be checked without storage is checked first, so a refused upload writes nothing; if storing
   * the keys fails after the device was created, the device is deleted again.
   */
  async put(userId: string, upload: DehydratedDeviceUpload): Promise<{ device_id: string }> {
    const { accounts, deviceKeys } = this.deps;
    const { deviceId } = upload;
    const parsed = parseDeviceId(deviceId);
    if (!parsed.ok) throw invalidParam(parsed.reason);
    const deviceData = checkDeviceData(upload.deviceData);
    if (upload.keys.device_keys === undefined) {
      throw missingParam("A dehydrated device needs device_keys");
    }
    const keys = await deviceKeys.checkUpload(userId, deviceId, upload.keys);
    // Refuse another device's ID before the previous dehydrated device is deleted. (A login
    // with this ID racing this upload is still refused below, once that deletion is done.)
    const existing = await accounts.getDevice(userId, deviceId);
    if (existing && !existing.dehydrated) throw deviceIdInUse(deviceId);

    for (let attempt = 0;; attempt++) {
      if (attempt === MAX_CREATE_ATTEMPTS) {
        throw new Error(`dehydrated device: too many concurrent uploads for ${userId}`);
      }
      const previous = await accounts.dehydratedDevice(userId);
      if (previous) await accounts.deleteDevices(userId, [previous.deviceId]);
      const outcome = await accounts.createDehydratedDevice(
        userId,
        deviceId,
        upload.displayName,
        deviceData,
      );
      if (outcome === "created") break;
      if (outcome === "device_exists") throw deviceIdInUse(deviceId);
      // "occupied": a concurrent upload created its device after our deletion; the last
      // upload wins, as with any replacement.
    }

    // A concurrent upload or DELETE may remove the device while its keys are being stored;
    // storeUpload re-checks after its commit that the device exists and drops the keys if not.
    try {
      await deviceKeys.storeUpload(userId, deviceId, keys);
    } catch (error) {
      await accounts.deleteDevices(userId, [deviceId]);
      throw error;
    }
    return { device_id: deviceId };
  }

  /** The user's dehydrated device; 404 M_NOT_FOUND (which tells clients we support it) if none. */
  async get(userId: string): Promise<{ device_id: string; device_data: JsonObject }> {
    const current = await this.deps.accounts.dehydratedDevice(userId);
    if (!current) throw notFound("No dehydrated device available");
    return { device_id: current.deviceId, device_data: current.deviceData };
  }

  /** Delete the user's dehydrated device (no user-interactive auth, as MSC3814 says). */
  async delete(userId: string): Promise<{ device_id: string }> {
    const current = await this.deps.accounts.dehydratedDevice(userId);
    if (!current) throw notFound("No dehydrated device available");
    await this.deps.accounts.deleteDevices(userId, [current.deviceId]);
    return { device_id: current.deviceId };
  }

  /**
   * A page of the dehydrated device's to-device inbox after `from` (a `nextBatch` of an earlier
   * page; the start when absent). Only for the user's current dehydrated device: any other ID
   * is 403 M_FORBIDDEN, as in Synapse. Nothing is deleted.
   */
  async events(
    userId: string,
    deviceId: string,
    from: string | undefined,
    limit: number = DEFAULT_EVENTS_LIMIT,
  ): Promise<DehydratedDeviceEvents> {
    const current = await this.deps.accounts.dehydratedDevice(userId);
    if (!current) throw forbidden("No dehydrated device exists");
    if (current.deviceId !== deviceId) {
      throw forbidden("You may only fetch messages for your dehydrated device");
    }
    let after: string | null = null;
    if (from !== undefined) {
      const match = BATCH_TOKEN.exec(from);
      if (!match) throw invalidParam(`Invalid batch token ${JSON.stringify(from)}`);
      after = match[1];
    }
    const pageSize = Math.min(Math.max(Math.trunc(limit), 1), MAX_EVENTS_LIMIT);
    const page = await this.deps.inbox.readInbox(userId, deviceId, after, pageSize);
    return {
      events: page.events,
      nextBatch: `d${page.last ?? after ?? INBOX_START}`,
      more: page.more,
    };
  }
}

const deviceIdInUse = (deviceId: string) =>
  invalidParam(`Device ID ${deviceId} is already in use by another device`);

/** `device_data`: an object with a string `algorithm`, small enough to store in one value. */
function checkDeviceData(value: unknown): JsonObject {
  if (value === undefined) throw missingParam("Missing device_data");
  if (!isJsonObject(value) || typeof value.algorithm !== "string") {
    throw badJson("device_data must be an object with a string algorithm");
  }
  if (canonicalJsonBytes(value).byteLength > MAX_DEVICE_DATA_BYTES) {
    throw tooLarge(`device_data is over ${MAX_DEVICE_DATA_BYTES} bytes`);
  }
  return value;
}
