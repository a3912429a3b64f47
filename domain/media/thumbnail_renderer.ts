/**
 * Where thumbnails are rendered: in a Worker per render, stopped after a deadline, so an image
 * that is slow to decode (within the pixel bound, but crafted or huge) costs at most that long
 * and never blocks the server's own isolate. At most a few renders run at once per process,
 * since each holds a decoded image in memory.
 */
import {
  type DecodeLimits,
  type RenderedThumbnail,
  renderThumbnail,
  ThumbnailError,
  type ThumbnailFailure,
  type ThumbnailSpec,
} from "./thumbnailer.ts";

/** Renders one thumbnail; throws `ThumbnailError`. */
export interface ThumbnailRenderer {
  render(bytes: Uint8Array, spec: ThumbnailSpec, limits: DecodeLimits): Promise<RenderedThumbnail>;
}

/** The message a render Worker receives. */
export interface RenderRequest {
  bytes: Uint8Array;
  spec: ThumbnailSpec;
  limits: DecodeLimits;
}

/** The message a render Worker answers. */
export type RenderResponse =
  | { ok: true; thumbnail: RenderedThumbnail }
  | { ok: false; reason: ThumbnailFailure; message: string };

/** Renders in the calling isolate, without a time bound (tests, and where Workers are absent). */
export const inlineThumbnailRenderer: ThumbnailRenderer = { render: renderThumbnail };

/** Renders each thumbnail in a fresh Worker, terminated after `timeoutMs`. */
export class WorkerThumbnailRenderer implements ThumbnailRenderer {
  readonly #timeoutMs: number;
  readonly #maxConcurrent: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /** `timeoutMs` bounds one render; `maxConcurrent` renders run at once, the rest queue. */
  constructor(options: { timeoutMs?: number; maxConcurrent?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxConcurrent = options.maxConcurrent ?? 2;
  }

  /** Render in a Worker; `ThumbnailError("timeout")` when it runs past the deadline. */
  async render(
    bytes: Uint8Array,
    spec: ThumbnailSpec,
    limits: DecodeLimits,
  ): Promise<RenderedThumbnail> {
    while (this.#running >= this.#maxConcurrent) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#running++;
    try {
      return await this.#renderInWorker(bytes, spec, limits);
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }

  async #renderInWorker(
    bytes: Uint8Array,
    spec: ThumbnailSpec,
    limits: DecodeLimits,
  ): Promise<RenderedThumbnail> {
    let worker: Worker;
    try {
      worker = new Worker(new URL("./thumbnail_worker.ts", import.meta.url).href, {
        type: "module",
      });
    } catch {
      // A runtime without Workers still renders, only without the time bound.
      return await renderThumbnail(bytes, spec, limits);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const response = await new Promise<RenderResponse>((resolve) => {
        timer = setTimeout(
          () =>
            resolve({ ok: false, reason: "timeout", message: "The image took too long to decode" }),
          this.#timeoutMs,
        );
        worker.onmessage = (e: MessageEvent<RenderResponse>) => resolve(e.data);
        // A WebAssembly abort (out of memory, a codec assertion) ends up here, not in the codec.
        worker.onerror = (e) => {
          e.preventDefault();
          resolve({ ok: false, reason: "corrupt", message: "The image could not be decoded" });
        };
        const request: RenderRequest = { bytes, spec, limits };
        worker.postMessage(request);
      });
      if (!response.ok) throw new ThumbnailError(response.reason, response.message);
      return response.thumbnail;
    } finally {
      clearTimeout(timer);
      worker.terminate();
    }
  }
}
