/**
 * Server-side key backups (the `room_keys` API): numbered backup versions per user, each
 * holding encrypted megolm session keys the server cannot read. Only the current version (the
 * newest not deleted) takes new keys; any live version can be read and have keys deleted.
 * Versions are decimal strings in the API and positive integers in storage.
 */
import { invalidParam, MatrixError, notFound, tooLarge } from "../errors.ts";
import { isJsonObject, type JsonValue } from "../protocol/json.ts";
import type {
  BackedUpKey,
  BackedUpKeyMetadata,
  BackupKeysState,
  BackupVersionInfo,
  BackupWriteResult,
  KeyBackupStore,
} from "../ports/key_backup_store.ts";

/** The one backup algorithm the spec defines. */
export const MEGOLM_BACKUP_V1 = "m.megolm_backup.v1.curve25519-aes-sha2";
/** Largest auth_data, in bytes of JSON: a public key and a few signatures need well under 1 KiB. */
export const MAX_AUTH_DATA_BYTES = 32_768;
/** Largest session_data, in bytes of JSON: one encrypted session export is about 1 KiB. */
export const MAX_SESSION_DATA_BYTES = 32_768;
/** Longest session ID or algorithm name, in bytes (megolm session IDs are 43 characters). */
export const MAX_NAME_BYTES = 255;

/** KeyBackupData as the API carries it. */
export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: JsonValue;
}

/** The version info the API returns. */
export interface BackupVersionResponse {
  version: string;
  algorithm: string;
  auth_data: JsonValue;
  count: number;
  etag: string;
}

/** The keys of one room: `{sessions: {sessionId: KeyBackupData}}`. */
export interface RoomKeyBackup {
  sessions: Record<string, KeyBackupData>;
}

/** What PUT and DELETE of keys return. */
export interface RoomKeysUpdateResponse {
  etag: string;
  count: number;
}

const encoder = new TextEncoder();
const byteLength = (text: string) => encoder.encode(text).byteLength;

/**
 * Whether `incoming` replaces `existing` for the same session (the spec's rule): a verified key
 * beats an unverified one; with equal verification the lower first_message_index wins, then the
 * lower forwarded_count; a full tie keeps the existing key, so a repeated upload changes nothing.
 */
export function replacesBackedUpKey(
  existing: BackedUpKeyMetadata,
  incoming: BackedUpKeyMetadata,
): boolean {
  if (existing.isVerified !== incoming.isVerified) return incoming.isVerified;
  if (existing.firstMessageIndex !== incoming.firstMessageIndex) {
    return incoming.firstMessageIndex < existing.firstMessageIndex;
  }
  return incoming.forwardedCount < existing.forwardedCount;
}

/**
 * A version parameter as stored: canonical positive decimal, or null. Anything else names no
 * version we could have issued, so callers answer 404 as Synapse does.
 */
export function parseBackupVersion(text: string): number | null {
  if (!/^[1-9][0-9]{0,14}$/.test(text)) return null;
  return Number(text);
}

/** The room_keys use cases for the requesting user. */
export class KeyBackupService {
  /** Build over a store. */
  constructor(private readonly store: KeyBackupStore) {}

  /** Create a backup version, which becomes current. */
  async createVersion(
    userId: string,
    algorithm: string,
    authData: JsonValue,
  ): Promise<{ version: string }> {
    checkVersionData(algorithm, authData);
    return { version: String(await this.store.createVersion(userId, algorithm, authData)) };
  }

  /** The current version; M_NOT_FOUND when there is none. */
  async currentVersion(userId: string): Promise<BackupVersionResponse> {
    const info = await this.store.currentVersion(userId);
    if (info === null) throw notFound("No current backup version");
    return versionResponse(info);
  }

  /** One version; M_NOT_FOUND when it does not exist or was deleted. */
  async version(userId: string, versionParam: string): Promise<BackupVersionResponse> {
    const info = await this.store.version(userId, versionNumber(versionParam));
    if (info === null) throw unknownVersion();
    return versionResponse(info);
  }

  /**
   * Replace a version's auth_data. The algorithm must stay the same and a `version` in the body
   * must name the version in the path (M_INVALID_PARAM otherwise).
   */
  async updateVersion(
    userId: string,
    versionParam: string,
    update: { algorithm: string; authData: JsonValue; version?: string },
  ): Promise<void> {
    if (update.version !== undefined && update.version !== versionParam) {
      throw invalidParam("The version in the body does not match the version in the path");
    }
    checkVersionData(update.algorithm, update.authData);
    const version = versionNumber(versionParam);
    const result = await this.store.updateVersion(
      userId,
      version,
      update.algorithm,
      update.authData,
    );
    if (result === "not_found") throw unknownVersion();
    if (result === "algorithm_mismatch") throw invalidParam("Algorithm does not match");
  }

  /**
   * Delete every backup version and its keys (account deactivation): the newest live version
   * is current, so deleting the current one until none is left reaches them all.
   */
  async deleteAllVersions(userId: string): Promise<void> {
    for (let current = await this.store.currentVersion(userId); current !== null;) {
      await this.store.deleteVersion(userId, current.version);
      current = await this.store.currentVersion(userId);
    }
  }

  /** Delete a version and its keys; deleting one deleted before succeeds. */
  async deleteVersion(userId: string, versionParam: string): Promise<void> {
    if (!await this.store.deleteVersion(userId, versionNumber(versionParam))) {
      throw unknownVersion();
    }
  }

  /**
   * Store keys in the current version. A stale version is refused with
   * M_WRONG_ROOM_KEYS_VERSION carrying `current_version`; an unknown one with M_NOT_FOUND.
   */
  async putKeys(
    userId: string,
    versionParam: string,
    keys: readonly BackedUpKey[],
  ): Promise<RoomKeysUpdateResponse> {
    const version = versionNumber(versionParam);
    keys.forEach(checkKey);
    return writeResponse(await this.store.putKeys(userId, version, keys));
  }

  /** Every key of a version: `{rooms: {roomId: {sessions}}}`, `{rooms: {}}` when empty. */
  async allKeys(
    userId: string,
    versionParam: string,
  ): Promise<{ rooms: Record<string, RoomKeyBackup> }> {
    const keys = await this.store.keys(userId, versionNumber(versionParam));
    if (keys === null) throw unknownVersion();
    const rooms: Record<string, RoomKeyBackup> = {};
    for (const key of keys) {
      if (!Object.hasOwn(rooms, key.roomId)) setOwn(rooms, key.roomId, { sessions: {} });
      setOwn(rooms[key.roomId].sessions, key.sessionId, keyBackupData(key));
    }
    return { rooms };
  }

  /** A room's keys in a version: `{sessions: {...}}`, `{sessions: {}}` when it has none. */
  async roomKeys(userId: string, versionParam: string, roomId: string): Promise<RoomKeyBackup> {
    const keys = await this.store.keys(userId, versionNumber(versionParam), roomId);
    if (keys === null) throw unknownVersion();
    const sessions: Record<string, KeyBackupData> = {};
    for (const key of keys) setOwn(sessions, key.sessionId, keyBackupData(key));
    return { sessions };
  }

  /** One session's key; M_NOT_FOUND when the version or the key does not exist. */
  async sessionKey(
    userId: string,
    versionParam: string,
    roomId: string,
    sessionId: string,
  ): Promise<KeyBackupData> {
    const found = await this.store.key(userId, versionNumber(versionParam), roomId, sessionId);
    if (found.version === null) throw unknownVersion();
    if (found.key === null) throw notFound("Key not found");
    return keyBackupData(found.key);
  }

  /** Delete all keys of a version, a room's, or one session's; any live version may be used. */
  async deleteKeys(
    userId: string,
    versionParam: string,
    roomId?: string,
    sessionId?: string,
  ): Promise<RoomKeysUpdateResponse> {
    const state = await this.store.deleteKeys(
      userId,
      versionNumber(versionParam),
      roomId,
      sessionId,
    );
    if (state === null) throw unknownVersion();
    return stateResponse(state);
  }
}

/** `target[name] = value` as an own property, so a session ID such as "__proto__" stays a key. */
function setOwn<T>(target: Record<string, T>, name: string, value: T): void {
  Object.defineProperty(target, name, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function unknownVersion(): MatrixError {
  return notFound("Unknown backup version");
}

function versionNumber(versionParam: string): number {
  const version = parseBackupVersion(versionParam);
  if (version === null) throw unknownVersion();
  return version;
}

/**
 * auth_data is the clients' business except for the spec's own algorithm, whose AuthData needs
 * the backup's public key. Other algorithms' auth_data is stored as sent, whatever its JSON type,
 * as Synapse does (its own documentation shows an opaque string).
 */
function checkVersionData(algorithm: string, authData: JsonValue): void {
  if (algorithm === "" || byteLength(algorithm) > MAX_NAME_BYTES) {
    throw invalidParam(`algorithm must be 1 to ${MAX_NAME_BYTES} bytes`);
  }
  if (byteLength(JSON.stringify(authData)) > MAX_AUTH_DATA_BYTES) {
    throw tooLarge(`auth_data is over ${MAX_AUTH_DATA_BYTES} bytes`);
  }
  // The spec's AuthData for the megolm backup requires the backup's public key.
  if (
    algorithm === MEGOLM_BACKUP_V1 &&
    !(isJsonObject(authData) && typeof authData.public_key === "string")
  ) {
    throw new MatrixError("M_BAD_JSON", 400, "auth_data.public_key must be a string");
  }
}

/**
 * A room ID as a backup names it: the server never resolves it (the keys are the clients'), so
 * only its sigil and length are checked, as Synapse checks none; a room ID of any version, or of
 * a room this server never saw, is stored as given.
 */
export function isBackupRoomId(roomId: string): boolean {
  return roomId.startsWith("!") && roomId.length > 1 && byteLength(roomId) <= MAX_NAME_BYTES;
}

function checkKey(key: BackedUpKey): void {
  if (!isBackupRoomId(key.roomId)) throw invalidParam(`Invalid room ID ${key.roomId}`);
  if (key.sessionId === "" || byteLength(key.sessionId) > MAX_NAME_BYTES) {
    throw invalidParam(`Session IDs must be 1 to ${MAX_NAME_BYTES} bytes`);
  }
  for (const n of [key.firstMessageIndex, key.forwardedCount]) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw invalidParam("first_message_index and forwarded_count must be non-negative integers");
    }
  }
  if (byteLength(JSON.stringify(key.sessionData)) > MAX_SESSION_DATA_BYTES) {
    throw tooLarge(`session_data is over ${MAX_SESSION_DATA_BYTES} bytes`);
  }
}

function versionResponse(info: BackupVersionInfo): BackupVersionResponse {
  return {
    version: String(info.version),
    algorithm: info.algorithm,
    auth_data: info.authData,
    count: info.count,
    etag: info.etag,
  };
}

function keyBackupData(key: BackedUpKey): KeyBackupData {
  return {
    first_message_index: key.firstMessageIndex,
    forwarded_count: key.forwardedCount,
    is_verified: key.isVerified,
    session_data: key.sessionData,
  };
}

function stateResponse(state: BackupKeysState): RoomKeysUpdateResponse {
  return { etag: state.etag, count: state.count };
}

function writeResponse(result: BackupWriteResult): RoomKeysUpdateResponse {
  if (result.kind === "not_found") throw unknownVersion();
  if (result.kind === "wrong_version") {
    throw new MatrixError("M_WRONG_ROOM_KEYS_VERSION", 403, "Wrong backup version", {
      current_version: String(result.currentVersion),
    });
  }
  return stateResponse(result.state);
}
