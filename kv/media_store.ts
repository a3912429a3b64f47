/**
 * The media repository's storage in Deno KV. A write cuts its bytes into 60 KiB chunks keyed by
 * a random upload ID and commits them 12 at a time while the body streams in (memory holds at
 * most 13 chunks); the last chunks go out in the same commit as the metadata, the indexes and
 * the quota counter, so media becomes visible whole or not at all. A write that is refused at
 * the end (quota, overwrite) deletes its chunks; one that dies half way leaves a pending record
 * with an expiry for a cleanup job to find.
 */
import {
  type DerivedKey,
  MEDIA_CHUNK_BYTES,
  MEDIA_CHUNKS_PER_COMMIT,
  type MediaMeta,
  type MediaReservation,
  type MediaStore,
  type MediaWrite,
  type MediaWriteResult,
  type MediaWriteTarget,
} from "../domain/ports/media_store.ts";
import { mediaKeys } from "./schema.ts";
import { commitOrConflict, contentionBackoff, contentionError } from "./commit_retry.ts";

/** Optimistic attempts of a final commit (quota counters race between a user's uploads). */
const COMMIT_ATTEMPTS = 20;
/** Chunks read per KV list page: a few hundred KiB in memory at a time. */
const READ_BATCH = 4;
/** Chunks deleted per commit when a write is dropped. */
const DELETE_BATCH = 200;

/** A fresh upload ID: 128 random bits, base64url. */
function newUploadId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** MediaStore over Deno KV. */
export class KvMediaStore implements MediaStore {
  /** Store in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** Start a write under a fresh upload ID. */
  beginWrite(pendingExpiresAt: number): Promise<MediaWrite> {
    return Promise.resolve(new KvMediaWrite(this.kv, newUploadId(), pendingExpiresAt));
  }

  /** Visible media's metadata. */
  async meta(server: string, mediaId: string): Promise<MediaMeta | null> {
    return (await this.kv.get<MediaMeta>(mediaKeys.meta(server, mediaId))).value;
  }

  /** A thumbnail's metadata. */
  async derivedMeta(key: DerivedKey): Promise<MediaMeta | null> {
    return (await this.kv.get<MediaMeta>(derivedKvKey(key))).value;
  }

  /** Every thumbnail of one media item. */
  async listDerived(server: string, mediaId: string): Promise<MediaMeta[]> {
    const out: MediaMeta[] = [];
    for await (
      const entry of this.kv.list<MediaMeta>({ prefix: mediaKeys.thumbnailPrefix(server, mediaId) })
    ) {
      out.push(entry.value);
    }
    return out;
  }

  /** The chunks of a write, pulled a few at a time as the reader asks. */
  readChunks(uploadId: string): ReadableStream<Uint8Array> {
    let iterator: Deno.KvListIterator<Uint8Array> | undefined;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        iterator ??= this.kv.list<Uint8Array>(
          { prefix: mediaKeys.chunkPrefix(uploadId) },
          { batchSize: READ_BATCH },
        );
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value.value);
      },
    }, { highWaterMark: 0 });
  }

  /** Reserve a media ID unless the user holds `maxPending` unexpired reservations. */
  async reserve(reservation: MediaReservation, maxPending: number, now: number): Promise<boolean> {
    const { uploader, server, mediaId } = reservation;
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS; attempt++) {
      const head = await this.kv.get<number>(mediaKeys.userReservationHead(uploader));
      const op = this.kv.atomic().check(head);
      let waiting = 0;
      for await (
        const entry of this.kv.list<number>({ prefix: mediaKeys.userReservationPrefix(uploader) })
      ) {
        if (entry.value > now) {
          waiting++;
          continue;
        }
        // Expired: its ID can no longer be uploaded to, so both records go.
        const [, , s, id] = entry.key as [string, string, string, string];
        op.delete(entry.key).delete(mediaKeys.reservation(s, id));
      }
      if (waiting >= maxPending) return false;
      const key = mediaKeys.reservation(server, mediaId);
      op.check({ key, versionstamp: null })
        .set(key, reservation, { expireIn: Math.max(1, reservation.expiresAt - now) })
        .set(mediaKeys.userReservation(uploader, server, mediaId), reservation.expiresAt)
        .set(mediaKeys.userReservationHead(uploader), (head.value ?? 0) + 1);
      if ((await commitOrConflict(op)).ok) return true;
      await contentionBackoff(attempt);
    }
    throw contentionError("reserving a media ID");
  }

  /** A reservation of a media ID. */
  async reservation(server: string, mediaId: string): Promise<MediaReservation | null> {
    return (await this.kv.get<MediaReservation>(mediaKeys.reservation(server, mediaId))).value;
  }

  /** Set or clear the quarantine flag. */
  async setQuarantined(server: string, mediaId: string, quarantined: boolean): Promise<boolean> {
    const key = mediaKeys.meta(server, mediaId);
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<MediaMeta>(key);
      if (entry.value === null) return false;
      const { quarantined: _was, ...rest } = entry.value;
      const next: MediaMeta = quarantined ? { ...rest, quarantined: true } : rest;
      if ((await commitOrConflict(this.kv.atomic().check(entry).set(key, next))).ok) return true;
      await contentionBackoff(attempt);
    }
    throw contentionError("quarantining media");
  }

  /** Bytes charged to a user. */
  async usage(userId: string): Promise<number> {
    return (await this.kv.get<number>(mediaKeys.usage(userId))).value ?? 0;
  }

  /** Delete what writes left behind when they died before their last commit. */
  async dropAbandonedWrites(now: number, signal?: AbortSignal): Promise<number> {
    let dropped = 0;
    for await (
      const entry of this.kv.list<{ expiresAt: number }>({
        prefix: mediaKeys.pendingUploadPrefix(),
      })
    ) {
      if (signal?.aborted) break;
      if (entry.value.expiresAt > now) continue;
      const uploadId = entry.key[1] as string;
      const keys: Deno.KvKey[] = [];
      for await (const chunk of this.kv.list({ prefix: mediaKeys.chunkPrefix(uploadId) })) {
        keys.push(chunk.key);
      }
      for (let start = 0; start < keys.length; start += DELETE_BATCH) {
        const op = this.kv.atomic();
        for (const key of keys.slice(start, start + DELETE_BATCH)) op.delete(key);
        await op.commit();
      }
      // Last, and only if no write finished meanwhile (the final commit deletes this record).
      await this.kv.atomic().check(entry).delete(entry.key).commit();
      dropped++;
    }
    return dropped;
  }

  /** The legacy freeze time: the first caller's `now`, kept for good. */
  async legacyFreezeTime(now: number): Promise<number> {
    const key = mediaKeys.legacyFreeze();
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<number>(key);
      if (entry.value !== null) return entry.value;
      const op = this.kv.atomic().check({ key, versionstamp: null }).set(key, now);
      if ((await commitOrConflict(op)).ok) return now;
      await contentionBackoff(attempt);
    }
    throw contentionError("recording the media freeze time");
  }
}

function derivedKvKey(key: DerivedKey): Deno.KvKey {
  return mediaKeys.thumbnail(
    key.server,
    key.mediaId,
    key.width,
    key.height,
    key.method,
    key.animated,
  );
}

/** One write: whole chunks flushed in batches, the rest held for the final commit. */
class KvMediaWrite implements MediaWrite {
  #pieces: Uint8Array[] = [];
  #buffered = 0;
  #nextIndex = 0;
  #size = 0;
  #pendingWritten = false;
  #closed = false;

  constructor(
    private readonly kv: Deno.Kv,
    readonly uploadId: string,
    private readonly pendingExpiresAt: number,
  ) {}

  get size(): number {
    return this.#size;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) throw new Error("media write already finished");
    if (bytes.byteLength === 0) return;
    this.#pieces.push(bytes);
    this.#buffered += bytes.byteLength;
    this.#size += bytes.byteLength;
    // Strictly more than a batch: the last chunks always wait for the metadata's commit.
    while (this.#buffered > MEDIA_CHUNK_BYTES * MEDIA_CHUNKS_PER_COMMIT) {
      await this.#flush(this.#takeChunks(MEDIA_CHUNKS_PER_COMMIT));
    }
  }

  async finish(target: MediaWriteTarget, sha256: string): Promise<MediaWriteResult> {
    if (this.#closed) throw new Error("media write already finished");
    this.#closed = true;
    const chunks = this.#takeChunks(MEDIA_CHUNKS_PER_COMMIT + 1);
    const firstIndex = this.#nextIndex;
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS; attempt++) {
      const op = this.kv.atomic();
      chunks.forEach((chunk, i) => op.set(mediaKeys.chunk(this.uploadId, firstIndex + i), chunk));
      if (this.#pendingWritten) {
        // The cleanup job may have dropped a write that outlived its expiry: never publish
        // metadata over chunks that are gone.
        const pending = await this.kv.get(mediaKeys.pendingUpload(this.uploadId));
        if (pending.value === null) {
          await this.#dropChunks();
          throw new Error("media write abandoned: its pending record expired");
        }
        op.check(pending).delete(pending.key);
      }
      const planned = await this.#plan(op, target, sha256);
      if (!planned.ok) {
        await this.#dropChunks();
        return planned;
      }
      if ((await commitOrConflict(op)).ok) return { ok: true, meta: planned.meta };
      await contentionBackoff(attempt);
    }
    await this.#dropChunks();
    throw contentionError("storing media");
  }

  async abort(): Promise<void> {
    this.#closed = true;
    this.#pieces = [];
    this.#buffered = 0;
    await this.#dropChunks();
  }

  /** Add the target's checks and records to `op`; a refusal when they cannot hold. */
  async #plan(
    op: Deno.AtomicOperation,
    target: MediaWriteTarget,
    sha256: string,
  ): Promise<MediaWriteResult> {
    const stored = { uploadId: this.uploadId, size: this.#size, sha256 };
    switch (target.kind) {
      case "local": {
        const meta: MediaMeta = { ...target.meta, ...stored };
        const metaKey = mediaKeys.meta(meta.server, meta.mediaId);
        const usageKey = mediaKeys.usage(target.quota.userId);
        const [existing, usage, reservation] = await this.kv.getMany<[MediaMeta, number, unknown]>([
          metaKey,
          usageKey,
          target.reservation !== undefined
            ? mediaKeys.reservation(meta.server, meta.mediaId)
            : metaKey,
        ]);
        if (existing.value !== null) return { ok: false, reason: "exists" };
        if (target.reservation !== undefined && reservation.value === null) {
          return { ok: false, reason: "exists" };
        }
        const used = usage.value ?? 0;
        if (used + this.#size > target.quota.limitBytes) return { ok: false, reason: "quota" };
        op.check(existing).check(usage)
          .set(metaKey, meta)
          .set(usageKey, used + this.#size)
          .set(
            mediaKeys.userMedia(target.quota.userId, meta.createdAt, meta.server, meta.mediaId),
            {
              size: this.#size,
            },
          )
          .set(mediaKeys.mediaByTime(meta.createdAt, meta.server, meta.mediaId), {
            size: this.#size,
          });
        if (target.reservation !== undefined) {
          const r = target.reservation;
          op.check(reservation)
            .delete(mediaKeys.reservation(r.server, r.mediaId))
            .delete(mediaKeys.userReservation(r.uploader, r.server, r.mediaId));
        }
        return { ok: true, meta };
      }
      case "remote": {
        const meta: MediaMeta = { ...target.meta, ...stored, remote: true };
        const metaKey = mediaKeys.meta(meta.server, meta.mediaId);
        const existing = await this.kv.get<MediaMeta>(metaKey);
        if (existing.value !== null) return { ok: false, reason: "existing", meta: existing.value };
        op.check(existing).set(metaKey, meta)
          .set(mediaKeys.mediaByTime(meta.createdAt, meta.server, meta.mediaId), {
            size: this.#size,
          });
        return { ok: true, meta };
      }
      case "derived": {
        const { key } = target;
        const meta: MediaMeta = {
          server: key.server,
          mediaId: key.mediaId,
          contentType: target.meta.contentType,
          createdAt: target.meta.createdAt,
          ...stored,
        };
        const derivedKey = derivedKvKey(key);
        const existing = await this.kv.get<MediaMeta>(derivedKey);
        if (existing.value !== null) return { ok: false, reason: "existing", meta: existing.value };
        op.check(existing).set(derivedKey, meta);
        return { ok: true, meta };
      }
    }
  }

  /** Up to `max` chunks cut from the buffer (the last one may be short). */
  #takeChunks(max: number): Uint8Array[] {
    const chunks: Uint8Array[] = [];
    while (chunks.length < max && this.#buffered > 0) {
      const length = Math.min(MEDIA_CHUNK_BYTES, this.#buffered);
      const chunk = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const piece = this.#pieces[0];
        const take = Math.min(piece.byteLength, length - filled);
        chunk.set(piece.subarray(0, take), filled);
        filled += take;
        if (take === piece.byteLength) this.#pieces.shift();
        else this.#pieces[0] = piece.subarray(take);
      }
      this.#buffered -= length;
      chunks.push(chunk);
    }
    return chunks;
  }

  /** Commit full chunks before the end; the first such commit marks the write as pending. */
  async #flush(chunks: Uint8Array[]): Promise<void> {
    const op = this.kv.atomic();
    chunks.forEach((chunk, i) =>
      op.set(mediaKeys.chunk(this.uploadId, this.#nextIndex + i), chunk)
    );
    if (!this.#pendingWritten) {
      op.set(mediaKeys.pendingUpload(this.uploadId), { expiresAt: this.pendingExpiresAt });
    }
    await op.commit();
    this.#pendingWritten = true;
    this.#nextIndex += chunks.length;
  }

  /** Delete the chunks committed so far, and the pending record with the last of them. */
  async #dropChunks(): Promise<void> {
    if (!this.#pendingWritten) return;
    for (let start = 0; start < this.#nextIndex; start += DELETE_BATCH) {
      const op = this.kv.atomic();
      const end = Math.min(this.#nextIndex, start + DELETE_BATCH);
      for (let i = start; i < end; i++) op.delete(mediaKeys.chunk(this.uploadId, i));
      if (end === this.#nextIndex) op.delete(mediaKeys.pendingUpload(this.uploadId));
      await op.commit();
    }
    this.#pendingWritten = false;
  }
}
