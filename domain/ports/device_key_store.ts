/**
 * Storage port for device keys, one-time keys and fallback keys. The KV implementation writes
 * every change of a device's identity keys together with its device-list update (one commit).
 */
import type { JsonObject, JsonValue } from "../protocol/json.ts";

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

/** A one-time or fallback key as uploaded under `<algorithm>:<keyId>`. */
export interface UploadedKey {
  algorithm: string;
  keyId: string;
  /** A bare key string, or a signed key object (`{key, signatures, fallback?}`). */
  key: JsonValue;
}

/**
 * Given the device's stored device keys (null before the first upload), the device keys to store
 * instead, or null to keep them. Called inside the store's commit loop, so it sees what the
 * commit will replace; it throws to refuse the upload, and then nothing is written.
 */
export type DeviceKeysMerge = (stored: JsonObject | null) => JsonObject | null;

/** One `/keys/upload`, validated. */
export interface KeyUpload {
  deviceKeys?: DeviceKeysMerge;
  oneTimeKeys: readonly UploadedKey[];
  /** At most one per algorithm. */
  fallbackKeys: readonly UploadedKey[];
}

/** What an upload did. */
export interface KeyUploadOutcome {
  /**
   * `<algorithm>:<keyId>` of one-time keys already stored with other content. When any, the
   * upload wrote nothing.
   */
  conflictingOneTimeKeys: string[];
  /** Versionstamp of the commit that stored new device keys with a device-list update, or null. */
  deviceListVersionstamp: string | null;
}

/** A key handed out by a claim. */
export interface ClaimedKey {
  algorithm: string;
  keyId: string;
  key: JsonValue;
  /** True when no one-time key was left and this is the device's fallback key. */
  fallback: boolean;
}

/**
 * Device keys, one-time keys and fallback keys of local devices. Device-key changes and device
 * removal land in the same commit as their device-list update.
 */
export interface DeviceKeyStore extends DeviceKeyReader {
  /**
   * Store an upload: device keys as `deviceKeys` decides, one-time keys not yet stored (the
   * same ID with the same content is skipped, with other content it is a conflict and nothing is
   * written), fallback keys replacing the previous one of their algorithm (its `used` flag is
   * kept only when the same key is uploaded again).
   */
  upload(userId: string, deviceId: string, upload: KeyUpload): Promise<KeyUploadOutcome>;
  /**
   * Hand out the device's oldest one-time key of `algorithm`, each exactly once however many
   * claims race (across processes too); when none is left, its fallback key of that algorithm,
   * marked used. Null when it has neither.
   */
  claim(userId: string, deviceId: string, algorithm: string): Promise<ClaimedKey | null>;
  /** Unclaimed one-time keys of the device by algorithm (algorithms with none are absent). */
  oneTimeKeyCounts(userId: string, deviceId: string): Promise<Record<string, number>>;
  /** Algorithms of the device's fallback keys that no claim has handed out yet. */
  unusedFallbackKeyTypes(userId: string, deviceId: string): Promise<string[]>;
  /** Algorithms of all the device's stored fallback keys, used or not. */
  fallbackKeyAlgorithms(userId: string, deviceId: string): Promise<string[]>;
  /**
   * Delete the devices' device keys, one-time keys and fallback keys; devices that had device
   * keys get one device-list update (`deleted`) in the commit deleting those. Idempotent.
   * Returns that commit's versionstamp, or null when no device had device keys left.
   */
  removeDevices(userId: string, deviceIds: readonly string[]): Promise<string | null>;
  /**
   * Record a device-list update for a device whose public details changed (its display name,
   * which key queries show), when it has device keys. Returns the commit's versionstamp, or
   * null when the device has no keys (nobody has fetched it, so nobody needs telling).
   */
  announceDeviceChange(userId: string, deviceId: string): Promise<string | null>;
  /**
   * Record a device-list update for devices that were added, renamed or deleted whatever keys
   * they hold (a new login, a keyless device's rename or deletion): clients list a user's
   * devices too, so their syncs and `/keys/changes` must name the user, as Synapse's do.
   * Returns the commit's versionstamp; null for a deletion the user's latest update already
   * records (a removal hook run again), which announces nothing.
   */
  announceDevices(
    userId: string,
    change: { deviceIds?: readonly string[]; deleted?: readonly string[] },
  ): Promise<string | null>;
}
