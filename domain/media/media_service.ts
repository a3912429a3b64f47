/**
 * The media repository's use cases: uploads (direct and asynchronous), reads of local and cached
 * remote media, thumbnails stored as derived media, quarantine, and the legacy read rule. Bytes
 * stream through (counted and hashed as they pass) into the MediaStore port, which makes them
 * visible only with the commit of their metadata, so a refused or broken upload leaves nothing.
 */
// node:crypto (a Deno built-in, also on Deno Deploy) hashes ~7x faster than @noble/hashes under
// Deno (~1,050 vs ~150 MB/s), which had made SHA-256 the upload path's bottleneck.
import { createHash, type Hash } from "node:crypto";
import { MatrixError, notFound, tooLarge } from "../errors.ts";
import type { MediaLegacyMode } from "../config.ts";
import type {
  DerivedKey,
  MediaMeta,
  MediaReservation,
  MediaStore,
  MediaWrite,
  MediaWriteResult,
  MediaWriteTarget,
} from "../ports/media_store.ts";
import type { RemoteMedia } from "../ports/remote_media.ts";

/** A media ID in a path (ours or a remote server's): anything else is never looked up. */
export const MEDIA_ID_PATTERN = /^[A-Za-z0-9_-]{1,255}$/;

/** Synapse's defaults: unused reservations of `/create` expire after a day, 5 per user. */
export const UNUSED_EXPIRY_MS = 24 * 60 * 60 * 1000;
/** How many unexpired `/create` reservations one user may hold. */
export const MAX_PENDING_PER_USER = 5;
/** How often a download waiting for an asynchronous upload checks KV for it. */
const NOT_YET_UPLOADED_POLL_MS = 250;
/** The spec's default `timeout_ms` for media reads. */
export const DEFAULT_MEDIA_TIMEOUT_MS = 20_000;
/** The longest `timeout_ms` honoured (Synapse caps it at a minute). */
export const MAX_MEDIA_TIMEOUT_MS = 60_000;
/** A write that never finished may be cleaned up after this. */
const ABANDONED_WRITE_MS = 24 * 60 * 60 * 1000;

/** Bytes to store: a stream (request bodies, remote fetches) or bytes already in memory. */
export type MediaBody = ReadableStream<Uint8Array> | Uint8Array;

/** Stored media opened for reading. */
export interface OpenedMedia {
  readonly meta: MediaMeta;
  readonly stream: ReadableStream<Uint8Array>;
}

/** What an upload says about its bytes. */
export interface UploadInfo {
  readonly contentType: string;
  readonly fileName?: string;
  /** The request's Content-Length, when it had one: the body must be exactly that long. */
  readonly declaredLength?: number;
  /** The local user uploading. */
  readonly uploader: string;
}

/** The MediaService's settings. */
export interface MediaServiceOptions {
  readonly serverName: string;
  readonly maxUploadBytes: number;
  readonly quotaBytes: number;
  readonly legacy: MediaLegacyMode;
  readonly now?: () => number;
  /** Fetches remote media on a cache miss; absent: remote media not cached is not found. */
  readonly remoteMedia?: RemoteMedia;
  readonly maxPendingPerUser?: number;
  /**
   * Longest wait for the next piece of a body being stored (default UPLOAD_IDLE_TIMEOUT_MS): a
   * stalled upload holds up to a commit's worth of chunks in memory, so it is given up.
   */
  readonly uploadIdleTimeoutMs?: number;
}

/** How long a body being stored may send nothing before it is refused as stalled. */
export const UPLOAD_IDLE_TIMEOUT_MS = 60_000;

/** 400 for a body whose length does not match its Content-Length, or which ended early. */
function badBody(message: string): MatrixError {
  return new MatrixError("M_INVALID_PARAM", 400, message);
}

/** A fresh media ID: 24 random base64url characters (144 bits). */
export function newMediaId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** The media repository. */
export class MediaService {
  readonly #store: MediaStore;
  readonly #options: MediaServiceOptions;
  #remoteMedia: RemoteMedia | undefined;
  /**
   * Remote fetches in flight in this process, so concurrent reads of one remote item fetch and
   * store it once (other processes may fetch it too: the store keeps the first copy).
   */
  readonly #remoteInFlight = new Map<string, Promise<MediaMeta | null>>();

  /** Build over a store with the server's limits. */
  constructor(store: MediaStore, options: MediaServiceOptions) {
    this.#store = store;
    this.#options = options;
    this.#remoteMedia = options.remoteMedia;
  }

  /** Our server name, the only one uploads and reservations may name. */
  get serverName(): string {
    return this.#options.serverName;
  }

  /** The largest upload accepted, in bytes (`m.upload.size`). */
  get maxUploadBytes(): number {
    return this.#options.maxUploadBytes;
  }

  /** Plug in the federation fetcher once it is built (main.ts wires it after the transport). */
  setRemoteMedia(remote: RemoteMedia): void {
    this.#remoteMedia = remote;
  }

  #now(): number {
    return this.#options.now?.() ?? Date.now();
  }

  /** Store an upload under a new media ID; M_TOO_LARGE over the size limit or the quota. */
  async upload(body: MediaBody, info: UploadInfo): Promise<{ mxc: string; meta: MediaMeta }> {
    this.#checkDeclared(info.declaredLength);
    const mediaId = newMediaId();
    const meta = await this.#storeLocal(body, info, mediaId);
    return { mxc: `mxc://${this.serverName}/${mediaId}`, meta };
  }

  /** Reserve a media ID for a later `uploadPending` (`POST /_matrix/media/v1/create`). */
  async createPending(uploader: string): Promise<{ mxc: string; unusedExpiresAt: number }> {
    const now = this.#now();
    const mediaId = newMediaId();
    const expiresAt = now + UNUSED_EXPIRY_MS;
    const reserved = await this.#store.reserve(
      { server: this.serverName, mediaId, uploader, createdAt: now, expiresAt },
      this.#options.maxPendingPerUser ?? MAX_PENDING_PER_USER,
      now,
    );
    if (!reserved) {
      throw new MatrixError(
        "M_LIMIT_EXCEEDED",
        429,
        "Too many media IDs are waiting for their upload",
        { retry_after_ms: 60_000 },
      );
    }
    return { mxc: `mxc://${this.serverName}/${mediaId}`, unusedExpiresAt: expiresAt };
  }

  /**
   * Upload the bytes of a reserved media ID: only its creator, only once (409
   * M_CANNOT_OVERWRITE_MEDIA after), only before the reservation expires.
   */
  async uploadPending(
    server: string,
    mediaId: string,
    body: MediaBody,
    info: UploadInfo,
  ): Promise<MediaMeta> {
    if (server !== this.serverName || !MEDIA_ID_PATTERN.test(mediaId)) {
      throw notFound("Unknown media ID");
    }
    if (await this.#store.meta(server, mediaId) !== null) throw cannotOverwrite();
    const reservation = await this.#store.reservation(server, mediaId);
    if (reservation === null) throw notFound("Unknown media ID");
    if (reservation.uploader !== info.uploader) {
      throw new MatrixError("M_FORBIDDEN", 403, "This media ID was created by another user");
    }
    if (reservation.expiresAt <= this.#now()) throw notFound("This media ID has expired");
    this.#checkDeclared(info.declaredLength);
    return await this.#storeLocal(body, info, mediaId, reservation);
  }

  /**
   * Open media for reading: local, or remote (cached, else fetched over federation when
   * `allowRemote` and a fetcher is wired). Null for unknown and quarantined media.
   */
  async open(
    server: string,
    mediaId: string,
    options: { allowRemote?: boolean } = {},
  ): Promise<OpenedMedia | null> {
    if (!MEDIA_ID_PATTERN.test(mediaId)) return null;
    let meta = await this.#store.meta(server, mediaId);
    if (meta === null && server !== this.serverName && (options.allowRemote ?? true)) {
      meta = await this.#fetchRemote(server, mediaId);
    }
    if (meta === null || meta.quarantined) return null;
    return { meta, stream: this.#store.readChunks(meta.uploadId) };
  }

  /** The metadata of stored media, quarantined or not (admin and thumbnail checks); or null. */
  async meta(server: string, mediaId: string): Promise<MediaMeta | null> {
    if (!MEDIA_ID_PATTERN.test(mediaId)) return null;
    return await this.#store.meta(server, mediaId);
  }

  /**
   * For a local media ID reserved by `/create` but not uploaded yet: wait up to `timeoutMs` for
   * its bytes (the spec's `timeout_ms`), checking KV every NOT_YET_UPLOADED_POLL_MS (the upload
   * may land in another process). Null when the ID is not reserved (or its reservation expired);
   * 504 M_NOT_YET_UPLOADED when the time runs out first.
   */
  async awaitUpload(
    server: string,
    mediaId: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<OpenedMedia | null> {
    if (server !== this.serverName || !MEDIA_ID_PATTERN.test(mediaId)) return null;
    // The real clock: an injected test clock may stand still.
    const deadline = performance.now() + timeoutMs;
    while (true) {
      // The reservation before the media: the upload's commit stores the media and drops the
      // reservation together, so the other order could miss both between its two reads.
      const reservation = await this.#store.reservation(server, mediaId);
      const opened = await this.open(server, mediaId, { allowRemote: false });
      if (opened !== null) return opened;
      if (reservation === null || reservation.expiresAt <= this.#now()) return null;
      const left = deadline - performance.now();
      if (left <= 0 || signal?.aborted) {
        throw new MatrixError("M_NOT_YET_UPLOADED", 504, "The content has not been uploaded yet");
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, NOT_YET_UPLOADED_POLL_MS)));
    }
  }

  /** Store another server's media as a cached copy (kept if another writer got there first). */
  async putRemote(
    server: string,
    mediaId: string,
    body: MediaBody,
    info: { contentType: string; fileName?: string },
  ): Promise<MediaMeta> {
    if (server === this.serverName || !MEDIA_ID_PATTERN.test(mediaId)) {
      throw notFound("Unknown media ID");
    }
    const result = await this.#write(body, this.maxUploadBytes, undefined, {
      kind: "remote",
      meta: {
        server,
        mediaId,
        contentType: info.contentType,
        ...(info.fileName !== undefined ? { fileName: info.fileName } : {}),
        createdAt: this.#now(),
      },
    });
    if (result.ok) return result.meta;
    if (result.reason === "existing") return result.meta;
    throw new Error(`unexpected media write result ${result.reason}`);
  }

  /** Store a thumbnail (create-if-absent: an existing one for the key wins and is returned). */
  async putDerived(key: DerivedKey, body: MediaBody, contentType: string): Promise<MediaMeta> {
    const result = await this.#write(body, this.maxUploadBytes, undefined, {
      kind: "derived",
      key,
      meta: { contentType, createdAt: this.#now() },
    });
    if (result.ok) return result.meta;
    if (result.reason === "existing") return result.meta;
    throw new Error(`unexpected media write result ${result.reason}`);
  }

  /** Open a stored thumbnail; null when absent or when the original is quarantined. */
  async openDerived(key: DerivedKey): Promise<OpenedMedia | null> {
    if (!MEDIA_ID_PATTERN.test(key.mediaId)) return null;
    const original = await this.#store.meta(key.server, key.mediaId);
    if (original?.quarantined) return null;
    const meta = await this.#store.derivedMeta(key);
    if (meta === null) return null;
    return { meta, stream: this.#store.readChunks(meta.uploadId) };
  }

  /** Every stored thumbnail of one media item (to pick the best fit among them). */
  async listDerived(server: string, mediaId: string): Promise<MediaMeta[]> {
    if (!MEDIA_ID_PATTERN.test(mediaId)) return [];
    return await this.#store.listDerived(server, mediaId);
  }

  /** Quarantine (or release) media: served to nobody while quarantined. False when unknown. */
  async quarantine(server: string, mediaId: string, quarantined = true): Promise<boolean> {
    if (!MEDIA_ID_PATTERN.test(mediaId)) return false;
    return await this.#store.setQuarantined(server, mediaId, quarantined);
  }

  /** Bytes charged to a user's quota. */
  async usage(userId: string): Promise<number> {
    return await this.#store.usage(userId);
  }

  /**
   * Whether the unauthenticated legacy `/_matrix/media/v3|r0` reads may serve this media
   * (`TESSERA_MEDIA_LEGACY`): `frozen` serves only media stored before the freeze time.
   */
  async legacyReadable(meta: MediaMeta): Promise<boolean> {
    switch (this.#options.legacy) {
      case "on":
        return true;
      case "off":
        return false;
      case "frozen":
        return meta.createdAt < await this.#store.legacyFreezeTime(this.#now());
    }
  }

  /** Drop the chunks of uploads abandoned half way (a leased background job calls this). */
  async dropAbandonedWrites(signal?: AbortSignal): Promise<number> {
    return await this.#store.dropAbandonedWrites(this.#now(), signal);
  }

  /** Record the legacy freeze time at start-up (the first start of a database fixes it). */
  async freezeLegacy(): Promise<number> {
    return await this.#store.legacyFreezeTime(this.#now());
  }

  #checkDeclared(declaredLength: number | undefined): void {
    if (declaredLength !== undefined && declaredLength > this.maxUploadBytes) {
      throw tooLarge(`Uploads are limited to ${this.maxUploadBytes} bytes`);
    }
  }

  async #storeLocal(
    body: MediaBody,
    info: UploadInfo,
    mediaId: string,
    reservation?: MediaReservation,
  ): Promise<MediaMeta> {
    // The final commit checks the quota atomically; checking what is left first as well means
    // a user at or near their quota cannot stream a whole upload into KV chunks (written, then
    // dropped) before hearing no.
    const left = this.#options.quotaBytes - await this.#store.usage(info.uploader);
    if (info.declaredLength !== undefined && info.declaredLength > left) throw overQuota();
    const limit = Math.min(this.maxUploadBytes, Math.max(0, left));
    const result = await this.#write(body, limit, info.declaredLength, {
      kind: "local",
      meta: {
        server: this.serverName,
        mediaId,
        contentType: info.contentType,
        ...(info.fileName !== undefined ? { fileName: info.fileName } : {}),
        uploader: info.uploader,
        createdAt: this.#now(),
      },
      quota: { userId: info.uploader, limitBytes: this.#options.quotaBytes },
      ...(reservation !== undefined ? { reservation } : {}),
    });
    if (result.ok) return result.meta;
    if (result.reason === "quota") throw overQuota();
    throw cannotOverwrite();
  }

  /** Stream `body` into a new write (counted against `maxBytes` and `declared`), then finish. */
  async #write(
    body: MediaBody,
    maxBytes: number,
    declared: number | undefined,
    target: MediaWriteTarget,
  ): Promise<MediaWriteResult> {
    const write = await this.#store.beginWrite(this.#now() + ABANDONED_WRITE_MS);
    const hash = createHash("sha256");
    try {
      await this.#pump(body, write, hash, maxBytes, declared, target);
    } catch (e) {
      await write.abort();
      throw e;
    }
    if (declared !== undefined && write.size !== declared) {
      await write.abort();
      throw badBody(`The body is ${write.size} bytes but Content-Length said ${declared}`);
    }
    return await write.finish(target, hash.digest("hex"));
  }

  async #pump(
    body: MediaBody,
    write: MediaWrite,
    hash: Hash,
    maxBytes: number,
    declared: number | undefined,
    target: MediaWriteTarget,
  ): Promise<void> {
    const accept = async (bytes: Uint8Array) => {
      if (write.size + bytes.byteLength > maxBytes) {
        // Under the upload limit, a local upload's cap is what is left of the uploader's quota.
        throw maxBytes < this.maxUploadBytes && target.kind === "local"
          ? overQuota()
          : tooLarge(`Uploads are limited to ${maxBytes} bytes`);
      }
      if (declared !== undefined && write.size + bytes.byteLength > declared) {
        throw badBody(`The body is longer than its Content-Length (${declared})`);
      }
      hash.update(bytes);
      await write.write(bytes);
    };
    if (body instanceof Uint8Array) return await accept(body);
    const reader = body.getReader();
    try {
      while (true) {
        let next: ReadableStreamReadResult<Uint8Array>;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idleMs = this.#options.uploadIdleTimeoutMs ?? UPLOAD_IDLE_TIMEOUT_MS;
        try {
          next = await Promise.race([
            reader.read(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new StalledBody()), idleMs);
            }),
          ]);
        } catch (e) {
          if (e instanceof StalledBody) {
            throw badBody(`The upload stalled: nothing arrived for ${idleMs} ms`);
          }
          // The client went away or the connection broke mid-body: a truncated upload.
          throw badBody("The upload ended before its body was complete");
        } finally {
          clearTimeout(timer);
        }
        if (next.done) return;
        await accept(next.value);
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      throw e;
    } finally {
      reader.releaseLock();
    }
  }

  #fetchRemote(server: string, mediaId: string): Promise<MediaMeta | null> {
    const key = `${server}/${mediaId}`;
    const running = this.#remoteInFlight.get(key);
    if (running !== undefined) return running;
    const fetching = this.#fetchRemoteOnce(server, mediaId).finally(() =>
      this.#remoteInFlight.delete(key)
    );
    this.#remoteInFlight.set(key, fetching);
    return fetching;
  }

  async #fetchRemoteOnce(server: string, mediaId: string): Promise<MediaMeta | null> {
    const remote = this.#remoteMedia;
    if (remote === undefined) return null;
    // A fetch that finished after this request read the metadata, but before it got here,
    // already stored the copy: no second federation download.
    const stored = await this.#store.meta(server, mediaId);
    if (stored !== null) return stored;
    const fetched = await remote.fetch(server, mediaId, { maxBytes: this.maxUploadBytes });
    if (fetched === null) return null;
    // The fetcher's own error (502 M_TOO_LARGE, a cut transfer) says more than "body ended".
    let failure: unknown;
    const source = fetched.stream.getReader();
    const watched = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await source.read();
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (e) {
          failure = e;
          controller.error(e);
        }
      },
      cancel: (reason) => source.cancel(reason),
    }, { highWaterMark: 0 });
    try {
      return await this.putRemote(server, mediaId, watched, {
        contentType: fetched.contentType,
        ...(fetched.fileName !== undefined ? { fileName: fetched.fileName } : {}),
      });
    } catch (e) {
      if (failure instanceof MatrixError) throw failure;
      // The limits and broken bodies of uploads are the origin's fault here, not the client's:
      // the spec answers 502 for remote content too large to serve.
      if (e instanceof MatrixError && e.status === 413) {
        throw new MatrixError("M_TOO_LARGE", 502, "The remote content is too large to serve");
      }
      if (e instanceof MatrixError && e.status === 400) {
        throw new MatrixError("M_UNKNOWN", 502, `The transfer of media from ${server} failed`);
      }
      throw e;
    }
  }
}

/** The idle timer of a body read (internal: becomes a 400). */
class StalledBody extends Error {}

/** 413 M_TOO_LARGE: the upload does not fit in what is left of the uploader's quota. */
function overQuota(): MatrixError {
  return tooLarge("This upload would exceed your media storage quota");
}

/** 409 M_CANNOT_OVERWRITE_MEDIA: the media ID already has its bytes. */
function cannotOverwrite(): MatrixError {
  return new MatrixError("M_CANNOT_OVERWRITE_MEDIA", 409, "This media ID already has content");
}
