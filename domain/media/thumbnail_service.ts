/**
 * Thumbnails of stored media (local, or remote media cached by the MediaService): the request
 * maps onto one of the spec's sizes, a stored thumbnail for it is served if there is one, and
 * otherwise one is rendered from the original, stored as derived media (create-if-absent, so
 * two processes rendering at once still store one) and served from the store from then on.
 */
import { MatrixError, notFound, tooLarge } from "../errors.ts";
import type { DerivedKey, MediaMeta } from "../ports/media_store.ts";
import type { MediaService, OpenedMedia } from "./media_service.ts";
import { chooseThumbnailBox, type ThumbnailMethod } from "./thumbnail_sizes.ts";
import { ThumbnailError } from "./thumbnailer.ts";
import { probeImage } from "./image_probe.ts";
import { joinChunks } from "../bytes.ts";
import type { ThumbnailRenderer } from "./thumbnail_renderer.ts";

/** A thumbnail request, already validated at the edge. */
export interface ThumbnailRequest {
  server: string;
  mediaId: string;
  width: number;
  height: number;
  method: ThumbnailMethod;
  animated: boolean;
  /** Fetch remote media over federation when it is not cached (`allow_remote`). */
  allowRemote: boolean;
}

/** What the ThumbnailService uses of the MediaService (main.ts passes it through). */
export type ThumbnailMedia = Pick<MediaService, "open" | "meta" | "openDerived" | "putDerived">;

/** The ThumbnailService's settings. */
export interface ThumbnailServiceOptions {
  /** `TESSERA_MEDIA_MAX_PIXELS`: larger images are refused before decoding. */
  maxPixels: number;
  /**
   * Renders (original read into memory, then decoded) running at once in this process; the
   * rest wait. Default 2, as many as the Worker renderer runs.
   */
  maxConcurrentRenders?: number;
}

/** Bytes read before the header is probed (JPEG frame headers may follow large EXIF data). */
const PROBE_BYTES = 256 * 1024;

/** M_TOO_LARGE: 413 for our own media, 502 for another server's (as the spec words it). */
function tooLargeFor(meta: MediaMeta, message: string): MatrixError {
  return meta.remote ? new MatrixError("M_TOO_LARGE", 502, message) : tooLarge(message);
}

/** 400 for media that has no thumbnail (not an image, or undecodable). */
function cannotThumbnail(message: string): MatrixError {
  return new MatrixError("M_UNKNOWN", 400, message);
}

/** Renders, stores and serves thumbnails. */
export class ThumbnailService {
  readonly #media: ThumbnailMedia;
  readonly #renderer: ThumbnailRenderer;
  readonly #options: ThumbnailServiceOptions;
  /** Renders in progress in this process, so concurrent requests for one key render once. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /**
   * Renders holding an original in memory: each may hold up to the upload limit (50 MB), so
   * twenty sizes of one image requested at once must not read twenty copies before the
   * renderer's own queue is reached.
   */
  #rendering = 0;
  readonly #waiting: (() => void)[] = [];

  /** Build over the media repository and a renderer. */
  constructor(
    media: ThumbnailMedia,
    renderer: ThumbnailRenderer,
    options: ThumbnailServiceOptions,
  ) {
    this.#media = media;
    this.#renderer = renderer;
    this.#options = options;
  }

  /**
   * The thumbnail for `request`, rendered and stored on first use. 404 M_NOT_FOUND for unknown
   * or quarantined media, 400 for media that cannot be thumbnailed, 413 M_TOO_LARGE for images
   * past the pixel bound or the decode time bound.
   */
  async thumbnail(request: ThumbnailRequest): Promise<OpenedMedia> {
    const box = chooseThumbnailBox(request.width, request.height);
    const key: DerivedKey = {
      server: request.server,
      mediaId: request.mediaId,
      width: box.width,
      height: box.height,
      method: request.method,
      animated: request.animated,
    };
    const stored = await this.#openStored(key);
    if (stored) return stored;
    const id = JSON.stringify(key);
    let render = this.#inFlight.get(id);
    if (!render) {
      render = this.#render(key, request.allowRemote).finally(() => this.#inFlight.delete(id));
      this.#inFlight.set(id, render);
    }
    await render;
    const rendered = await this.#openStored(key);
    if (!rendered) throw notFound("Unknown media");
    return rendered;
  }

  /** A stored thumbnail, unless its original is gone or quarantined. */
  async #openStored(key: DerivedKey): Promise<OpenedMedia | null> {
    const opened = await this.#media.openDerived(key);
    if (opened === null) return null;
    // openDerived refuses quarantined originals; an original that is no longer stored at all
    // (deleted) must not leave its thumbnails reachable either.
    if (await this.#media.meta(key.server, key.mediaId) === null) {
      await opened.stream.cancel();
      return null;
    }
    return opened;
  }

  async #bounded(work: () => Promise<void>): Promise<void> {
    while (this.#rendering >= (this.#options.maxConcurrentRenders ?? 2)) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#rendering++;
    try {
      await work();
    } finally {
      this.#rendering--;
      this.#waiting.shift()?.();
    }
  }

  async #render(key: DerivedKey, allowRemote: boolean): Promise<void> {
    // Opening may fetch remote media into the cache (slow, but streamed: outside the bound).
    const original = await this.#media.open(key.server, key.mediaId, { allowRemote });
    if (original === null) throw notFound("Unknown media");
    if (!original.meta.contentType.toLowerCase().startsWith("image/")) {
      await original.stream.cancel();
      throw cannotThumbnail("This media is not an image");
    }
    await this.#bounded(() => this.#renderOpened(key, original));
  }

  async #renderOpened(key: DerivedKey, original: OpenedMedia): Promise<void> {
    // Another process may have stored it while this request waited its turn.
    const stored = await this.#media.openDerived(key);
    if (stored !== null) {
      await stored.stream.cancel();
      return await original.stream.cancel();
    }
    const bytes = await this.#readImage(original.stream, original.meta);
    let thumbnail;
    try {
      thumbnail = await this.#renderer.render(
        bytes,
        {
          box: { width: key.width, height: key.height },
          method: key.method,
          animated: key.animated,
        },
        { maxPixels: this.#options.maxPixels },
      );
    } catch (e) {
      if (!(e instanceof ThumbnailError)) throw e;
      switch (e.reason) {
        case "too_large":
          throw tooLargeFor(original.meta, "The image has too many pixels to thumbnail");
        case "timeout":
          throw tooLargeFor(original.meta, "The image takes too long to decode to thumbnail");
        case "unsupported":
          throw cannotThumbnail("Thumbnails are made of JPEG, PNG, GIF and WebP images only");
        case "corrupt":
          throw cannotThumbnail("The image could not be decoded");
      }
    }
    await this.#media.putDerived(key, thumbnail.bytes, thumbnail.contentType);
  }

  /**
   * The original's bytes, refused as soon as the header read from its first chunks claims more
   * pixels than the bound: a bomb is turned away without reading the rest of a large file.
   */
  async #readImage(stream: ReadableStream<Uint8Array>, meta: MediaMeta): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let size = 0;
    let probed = false;
    for await (const part of stream) {
      parts.push(part);
      size += part.length;
      if (!probed && size >= PROBE_BYTES) {
        probed = true;
        const probe = probeImage(joinChunks(parts));
        // Leaving the loop by throwing cancels the rest of the stream.
        if (probe && probe.width * probe.height > this.#options.maxPixels) {
          throw tooLargeFor(meta, "The image has too many pixels to thumbnail");
        }
      }
    }
    return joinChunks(parts);
  }
}
