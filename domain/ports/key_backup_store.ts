/**
 * Storage port for server-side key backups: a user's numbered backup versions, each holding
 * encrypted megolm session keys by (room, session), with an exact key count and an etag that
 * changes whenever (and only when) the stored keys change.
 */
import type { JsonValue } from "../protocol/json.ts";

/** One backup version as the API shows it. */
export interface BackupVersionInfo {
  version: number;
  algorithm: string;
  /** Algorithm-dependent; opaque to the server except for the spec's own algorithm. */
  authData: JsonValue;
  /** Number of keys stored in the version. */
  count: number;
  /** Opaque; changes with every change of the stored keys. */
  etag: string;
}

/** The metadata the replacement rule compares, without the encrypted payload. */
export interface BackedUpKeyMetadata {
  firstMessageIndex: number;
  forwardedCount: number;
  isVerified: boolean;
}

/** One backed-up session key (KeyBackupData) with where it belongs. */
export interface BackedUpKey extends BackedUpKeyMetadata {
  roomId: string;
  sessionId: string;
  /** Algorithm-dependent encrypted data; opaque to the server (any JSON, as Synapse keeps it). */
  sessionData: JsonValue;
}

/** The backup's count and etag after a change of its keys. */
export interface BackupKeysState {
  count: number;
  etag: string;
}

/** Outcome of a write that needs the version to be the current one. */
export type BackupWriteResult =
  | { kind: "ok"; state: BackupKeysState }
  /** The version does not exist or was deleted. */
  | { kind: "not_found" }
  /** The version exists but a newer one is current. */
  | { kind: "wrong_version"; currentVersion: number };

/** Outcome of an auth_data update. */
export type BackupUpdateResult = "updated" | "not_found" | "algorithm_mismatch";

/** Key backup storage. Versions are positive integers, never reused for one user. */
export interface KeyBackupStore {
  /** Create a version, which becomes the current one; returns its number. */
  createVersion(userId: string, algorithm: string, authData: JsonValue): Promise<number>;
  /** The current version: the newest not deleted; null when there is none. */
  currentVersion(userId: string): Promise<BackupVersionInfo | null>;
  /** One version; null when it does not exist or was deleted. */
  version(userId: string, version: number): Promise<BackupVersionInfo | null>;
  /** Replace a version's auth_data, provided its algorithm is `algorithm`. */
  updateVersion(
    userId: string,
    version: number,
    algorithm: string,
    authData: JsonValue,
  ): Promise<BackupUpdateResult>;
  /**
   * Delete a version and its keys. The version disappears for readers and writers in one
   * commit; its keys are purged afterwards in chunks. Deleting a version deleted before
   * succeeds (and resumes an interrupted purge). Returns false when the version never existed.
   */
  deleteVersion(userId: string, version: number): Promise<boolean>;
  /**
   * Store keys in `version`, which must be current, applying `replacesBackedUpKey`
   * (domain/e2ee/key_backup_service.ts) where a session already has a key. Large uploads commit in chunks; each chunk's keys, count and
   * etag land together, and a repeated upload is a no-op.
   */
  putKeys(
    userId: string,
    version: number,
    keys: readonly BackedUpKey[],
  ): Promise<BackupWriteResult>;
  /** The keys of a version, or of one room in it; null when the version does not exist. */
  keys(userId: string, version: number, roomId?: string): Promise<BackedUpKey[] | null>;
  /**
   * One key: `version: null` when the version does not exist, `key: null` when the session has
   * no key in it.
   */
  key(
    userId: string,
    version: number,
    roomId: string,
    sessionId: string,
  ): Promise<{ version: BackupVersionInfo; key: BackedUpKey | null } | { version: null }>;
  /**
   * Delete the keys of a version (any existing version, not only the current one): all, one
   * room's, or one session's. Null when the version does not exist.
   */
  deleteKeys(
    userId: string,
    version: number,
    roomId?: string,
    sessionId?: string,
  ): Promise<BackupKeysState | null>;
}
