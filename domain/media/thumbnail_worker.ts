/**
 * The Worker in which `WorkerThumbnailRenderer` renders one thumbnail, so a decode that runs
 * too long can be stopped with `terminate()` (a WebAssembly loop cannot be interrupted from the
 * isolate that runs it).
 */
import { renderThumbnail, ThumbnailError } from "./thumbnailer.ts";
import type { RenderRequest, RenderResponse } from "./thumbnail_renderer.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<RenderRequest>) => void) | null;
  postMessage(message: RenderResponse, transfer?: Transferable[]): void;
};

scope.onmessage = async (e) => {
  const { bytes, spec, limits } = e.data;
  try {
    const thumbnail = await renderThumbnail(bytes, spec, limits);
    scope.postMessage({ ok: true, thumbnail }, [thumbnail.bytes.buffer as ArrayBuffer]);
  } catch (error) {
    scope.postMessage(
      error instanceof ThumbnailError
        ? { ok: false, reason: error.reason, message: error.message }
        : { ok: false, reason: "corrupt", message: "The image could not be decoded" },
    );
  }
};
