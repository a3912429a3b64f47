import { assertEquals } from "../../assert.ts";
import {
  inlineThumbnailRenderer,
  WorkerThumbnailRenderer,
} from "../../../domain/media/thumbnail_renderer.ts";
import type { ThumbnailError, ThumbnailSpec } from "../../../domain/media/thumbnailer.ts";
import { gifOf, jpegOf, pngBomb } from "./image_fixtures.ts";

const spec: ThumbnailSpec = { box: { width: 96, height: 96 }, method: "crop", animated: false };
const limits = { maxPixels: 32_000_000 };

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as ThumbnailError).reason;
  }
  return "rendered";
}

Deno.test("WorkerThumbnailRenderer renders in a Worker what the inline renderer renders", async () => {
  const jpeg = await jpegOf(640, 480);
  const renderer = new WorkerThumbnailRenderer();
  const [inWorker, inline] = await Promise.all([
    renderer.render(jpeg, spec, limits),
    inlineThumbnailRenderer.render(jpeg, spec, limits),
  ]);
  assertEquals(inWorker, inline);
  // Refusals cross the Worker boundary as the same ThumbnailError reasons.
  assertEquals(await reason(renderer.render(pngBomb(50000, 50000), spec, limits)), "too_large");
  assertEquals(await reason(renderer.render(new Uint8Array(64), spec, limits)), "unsupported");
});

Deno.test("WorkerThumbnailRenderer stops a render past its deadline", async () => {
  // A deadline of 0 ms passes before the Worker has even loaded its codecs: the Worker is
  // terminated and the render refused, whatever the image.
  const renderer = new WorkerThumbnailRenderer({ timeoutMs: 0 });
  assertEquals(await reason(renderer.render(gifOf(300, 300, 20), spec, limits)), "timeout");
  // Later renders are not held up by the stopped one.
  const ok = new WorkerThumbnailRenderer({ maxConcurrent: 1 });
  const results = await Promise.all([1, 2, 3].map(() => ok.render(gifOf(50, 50, 1), spec, limits)));
  assertEquals(results.map((r) => r.width), [50, 50, 50]);
});
