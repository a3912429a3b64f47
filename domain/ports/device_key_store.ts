/**
 * Storage port for device keys, one-time keys and fallback keys. The KV implementation writes
 * every change of a device's identity keys together with its device-list update (one commit).
 */
import type { JsonObject } from "../json.ts";

/** Device keys of several users: userId -> deviceId -> the signed device keys object. */
export type DeviceKeysByUser = Map<string, Map<string, JsonObject>>;

/** Reading device keys; the part other E2EE areas (queries, signatures) depend on. */
export interface DeviceKeyReader {
  /**
   * The stored device keys of each user's listed devices, or of all their devices when the list
   * is empty. Devices without uploaded keys are absent. Signatures are as uploaded; uploaded
   * cross-signing signatures are merged by the caller.
   */
  deviceKeys(query: ReadonlyMap<string, readonly string[]>): Promise<DeviceKeysByUser>;
}
