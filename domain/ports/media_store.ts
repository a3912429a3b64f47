/**
 * Storage of media bytes and their metadata (the media repository, domain/media/). Bytes are
 * written in chunks under an upload ID while they stream in, and become visible only when the
 * metadata record is committed together with the last chunks (`MediaWrite.finish`), so a
 * half-written upload is never served. The KV adapter is kv/media_store.ts.
 */

/** Bytes per stored chunk: under KV's 64 KiB value limit with room to spare. */
export const MEDIA_CHUNK_BYTES = 60 * 1024;

/** Chunks per commit while an upload streams in (12 x 60 KiB stays under KV's 800 KiB). */
export const MEDIA_CHUNKS_PER_COMMIT = 12;

/** A stored media item's (or derived thumbnail's) metadata. */
export interface MediaMeta {
  /** The server in the mxc URI (ours, or the remote origin for cached remote media). */
  readonly server: string;
  readonly mediaId: string;
  /** The chunks' key: a random ID chosen when the write began. */
  readonly uploadId: string;
  readonly contentType: string;
  readonly fileName?: string;
  /** Bytes. */
  readonly size: number;
  /** Lower-case hex SHA-256 of the bytes. */
  readonly sha256: string;
  /** The local user who uploaded it; absent for remote and derived media. */
  readonly uploader?: string;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Quarantined by an administrator: served to nobody. */
  readonly quarantined?: boolean;
  /** A cached copy of another server's media (not charged to any quota). */
  readonly remote?: boolean;
}

/** What identifies one thumbnail of one media item. */
export interface DerivedKey {
  readonly server: string;
  readonly mediaId: string;
  readonly width: number;
  readonly height: number;
  readonly method: "crop" | "scale";
  readonly animated: boolean;
}

/** A reservation of a media ID by `POST /_matrix/media/v1/create`, waiting for its bytes. */
export interface MediaReservation {
  readonly server: string;
  readonly mediaId: string;
  readonly uploader: string;
  readonly createdAt: number;
  /** After this (ms since the epoch) the ID can no longer be uploaded to. */
  readonly expiresAt: number;
}

/** Where the bytes of a `MediaWrite` become visible, decided when it finishes. */
export type MediaWriteTarget =
  | {
    /** Our own upload: charged to `quota.userId`, refused past `quota.limitBytes`. */
    readonly kind: "local";
    readonly meta: Omit<MediaMeta, "uploadId" | "size" | "sha256">;
    readonly quota: { readonly userId: string; readonly limitBytes: number };
    /**
     * For an asynchronous upload: the reservation that must still be there (and is removed);
     * the media ID must not exist yet.
     */
    readonly reservation?: MediaReservation;
  }
  | {
    /** A cached copy of remote media; if it is already cached the existing copy stays. */
    readonly kind: "remote";
    readonly meta: Omit<MediaMeta, "uploadId" | "size" | "sha256" | "remote">;
  }
  | {
    /** A thumbnail; if one already exists for `key` the existing one stays. */
    readonly kind: "derived";
    readonly key: DerivedKey;
    readonly meta: Pick<MediaMeta, "contentType" | "createdAt">;
  };

/** How a `MediaWrite.finish` ended. */
export type MediaWriteResult =
  | { readonly ok: true; readonly meta: MediaMeta }
  /** `quota`: the uploader's quota would be exceeded; nothing became visible. */
  | { readonly ok: false; readonly reason: "quota" }
  /** `exists`: the media ID already has bytes (or its reservation is gone); nothing written. */
  | { readonly ok: false; readonly reason: "exists" }
  /** `existing`: remote/derived media already stored by another writer; that copy is kept. */
  | { readonly ok: false; readonly reason: "existing"; readonly meta: MediaMeta };

/** One write in progress: chunks go out as they fill, the metadata with the last of them. */
export interface MediaWrite {
  readonly uploadId: string;
  /** Bytes accepted so far. */
  readonly size: number;
  /** Append bytes; full chunks are committed in batches (never the whole body in memory). */
  write(bytes: Uint8Array): Promise<void>;
  /** Commit the remaining chunks with the metadata, indexes and quota in one commit. */
  finish(target: MediaWriteTarget, sha256: string): Promise<MediaWriteResult>;
  /** Give up: drop the chunks written so far (best effort; the pending record remains). */
  abort(): Promise<void>;
}

/** The media repository's storage. */
export interface MediaStore {
  /** Start a write under a fresh upload ID; abandoned after `pendingExpiresAt` (ms). */
  beginWrite(pendingExpiresAt: number): Promise<MediaWrite>;
  /** The metadata of stored media (local or cached remote), or null. */
  meta(server: string, mediaId: string): Promise<MediaMeta | null>;
  /** A thumbnail's metadata, or null. */
  derivedMeta(key: DerivedKey): Promise<MediaMeta | null>;
  /** Every stored thumbnail of one media item. */
  listDerived(server: string, mediaId: string): Promise<MediaMeta[]>;
  /** The bytes under `uploadId`, read a few chunks at a time. */
  readChunks(uploadId: string): ReadableStream<Uint8Array>;
  /**
   * Reserve `mediaId` for `uploader` unless they already hold `maxPending` unexpired
   * reservations (false then, nothing written).
   */
  reserve(reservation: MediaReservation, maxPending: number, now: number): Promise<boolean>;
  /** The reservation of a media ID (expired or not), or null. */
  reservation(server: string, mediaId: string): Promise<MediaReservation | null>;
  /** Set or clear the quarantine flag; false when the media is unknown. */
  setQuarantined(server: string, mediaId: string, quarantined: boolean): Promise<boolean>;
  /** Bytes charged to a user's quota. */
  usage(userId: string): Promise<number>;
  /**
   * The time unauthenticated legacy downloads were frozen at: written as `now` by the first
   * call and kept from then on (the same for every process).
   */
  legacyFreezeTime(now: number): Promise<number>;
  /**
   * Delete the chunks of writes that never finished and whose pending record expired before
   * `now`; how many writes were dropped.
   */
  dropAbandonedWrites(now: number, signal?: AbortSignal): Promise<number>;
}
