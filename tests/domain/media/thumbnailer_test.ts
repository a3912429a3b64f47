import { assert, assertEquals } from "../../assert.ts";
import { decode as decodeJpeg } from "@jsquash/jpeg";
import { decode as decodePng } from "@jsquash/png";
import { decode as decodeWebp } from "@jsquash/webp";
import { probeImage } from "../../../domain/media/image_probe.ts";
import {
  chooseThumbnailBox,
  planThumbnail,
  THUMBNAIL_BOXES,
} from "../../../domain/media/thumbnail_sizes.ts";
import {
  MAX_ANIMATION_FRAMES,
  renderThumbnail,
  type ThumbnailError,
  type ThumbnailSpec,
} from "../../../domain/media/thumbnailer.ts";
import { splitAnimatedWebp } from "../../../domain/media/webp_container.ts";
import { animatedWebpOf, gifOf, jpegOf, pixels, pngBomb, pngOf, webpOf } from "./image_fixtures.ts";

const limits = { maxPixels: 32_000_000 };
const spec = (
  width: number,
  height: number,
  method: "crop" | "scale",
  animated = false,
): ThumbnailSpec => ({ box: chooseThumbnailBox(width, height), method, animated });

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assertEquals((e as Error).name, "ThumbnailError");
    return (e as ThumbnailError).reason;
  }
  throw new Error("expected a ThumbnailError");
}

const buf = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;

Deno.test("probeImage reads each format's size and animation from the header", async () => {
  assertEquals(probeImage(await jpegOf(300, 200)), {
    format: "jpeg",
    width: 300,
    height: 200,
    animated: false,
  });
  assertEquals(probeImage(await pngOf(31, 17)), {
    format: "png",
    width: 31,
    height: 17,
    animated: false,
  });
  assertEquals(probeImage(await webpOf(64, 48)), {
    format: "webp",
    width: 64,
    height: 48,
    animated: false,
  });
  assertEquals(probeImage(gifOf(40, 30, 1)), {
    format: "gif",
    width: 40,
    height: 30,
    animated: false,
  });
  assertEquals(probeImage(gifOf(40, 30, 3))?.animated, true);
  assertEquals(probeImage(await animatedWebpOf(20, 10, 2)), {
    format: "webp",
    width: 20,
    height: 10,
    animated: true,
  });
  assertEquals(probeImage(pngBomb(50000, 50000))?.width, 50000);
  assertEquals(probeImage(new TextEncoder().encode("%PDF-1.7 not an image")), null);
  assertEquals(
    probeImage(new TextEncoder().encode("<svg xmlns='http://www.w3.org/2000/svg'/>")),
    null,
  );
});

Deno.test("chooseThumbnailBox picks the smallest default box at least as large as asked", () => {
  assertEquals(chooseThumbnailBox(1, 1), { width: 32, height: 32 });
  assertEquals(chooseThumbnailBox(32, 32), { width: 32, height: 32 });
  assertEquals(chooseThumbnailBox(33, 10), { width: 96, height: 96 });
  assertEquals(chooseThumbnailBox(100, 50), { width: 320, height: 240 });
  assertEquals(chooseThumbnailBox(320, 241), { width: 640, height: 480 });
  assertEquals(chooseThumbnailBox(5000, 5000), THUMBNAIL_BOXES[THUMBNAIL_BOXES.length - 1]);
});

Deno.test("planThumbnail: scale fits inside, crop fills and trims the centre, neither upscales", () => {
  const box = { width: 96, height: 96 };
  assertEquals(planThumbnail(200, 100, box, "scale"), {
    sx: 0,
    sy: 0,
    sw: 200,
    sh: 100,
    width: 96,
    height: 48,
  });
  assertEquals(planThumbnail(200, 100, box, "crop"), {
    sx: 50,
    sy: 0,
    sw: 100,
    sh: 100,
    width: 96,
    height: 96,
  });
  assertEquals(planThumbnail(20, 10, box, "scale"), {
    sx: 0,
    sy: 0,
    sw: 20,
    sh: 10,
    width: 20,
    height: 10,
  });
  // Narrower than the box, taller than it: only the overflowing height is trimmed.
  assertEquals(planThumbnail(50, 200, box, "crop"), {
    sx: 0,
    sy: 52,
    sw: 50,
    sh: 96,
    width: 50,
    height: 96,
  });
});

Deno.test("renderThumbnail: JPEG, PNG, GIF and WebP in; the box's size out", async () => {
  const sources = {
    jpeg: await jpegOf(1000, 500),
    png: await pngOf(1000, 500),
    gif: gifOf(1000, 500, 1),
    webp: await webpOf(1000, 500),
  };
  for (const [format, bytes] of Object.entries(sources)) {
    const crop = await renderThumbnail(bytes, spec(32, 32, "crop"), limits);
    const scale = await renderThumbnail(bytes, spec(320, 240, "scale"), limits);
    const type = format === "jpeg" ? "image/jpeg" : "image/png";
    assertEquals([crop.contentType, crop.width, crop.height], [type, 32, 32], format);
    assertEquals([scale.contentType, scale.width, scale.height], [type, 320, 160], format);
    const decode = format === "jpeg" ? decodeJpeg : decodePng;
    const decoded = await decode(buf(scale.bytes));
    assertEquals([decoded.width, decoded.height], [320, 160], format);
    assertEquals(probeImage(crop.bytes)?.width, 32, format);
  }
});

Deno.test("renderThumbnail: crop keeps the centre of the image", async () => {
  // Red | green | blue thirds: a square crop of a 3:1 image is the green third.
  const img = pixels(
    300,
    100,
    (x) => x < 100 ? [255, 0, 0, 255] : x < 200 ? [0, 255, 0, 255] : [0, 0, 255, 255],
  );
  const out = await renderThumbnail(await pngOf(300, 100, img), spec(96, 96, "crop"), limits);
  const decoded = await decodePng(buf(out.bytes));
  assertEquals([decoded.width, decoded.height], [96, 96]);
  for (const [x, y] of [[2, 2], [48, 48], [93, 93]]) {
    const i = (y * 96 + x) * 4;
    const [r, g, b] = decoded.data.slice(i, i + 3);
    assert(g > 200 && r < 40 && b < 40, `pixel ${x},${y} is ${r},${g},${b}`);
  }
  const scaled = await renderThumbnail(await pngOf(300, 100, img), spec(96, 96, "scale"), limits);
  assertEquals([scaled.width, scaled.height], [96, 32]);
});

Deno.test("renderThumbnail: a truncated JPEG renders what arrived (libjpeg greys the rest)", async () => {
  const out = await renderThumbnail(
    (await jpegOf(200, 200)).subarray(0, 300),
    spec(32, 32, "crop"),
    limits,
  );
  assertEquals([out.contentType, out.width, out.height], ["image/jpeg", 32, 32]);
});

Deno.test("renderThumbnail never upscales a small image", async () => {
  const out = await renderThumbnail(await jpegOf(20, 10), spec(800, 600, "scale"), limits);
  assertEquals([out.width, out.height], [20, 10]);
});

Deno.test("renderThumbnail: an animated GIF gives an animated WebP only when asked", async () => {
  const gif = gifOf(200, 100, 3);
  const still = await renderThumbnail(gif, spec(96, 96, "scale"), limits);
  assertEquals([still.contentType, still.animated], ["image/png", false]);
  const moving = await renderThumbnail(gif, spec(96, 96, "scale", true), limits);
  assertEquals([moving.contentType, moving.animated], ["image/webp", true]);
  const animation = splitAnimatedWebp(moving.bytes);
  assertEquals(animation?.frames.length, 3);
  assertEquals([animation?.width, animation?.height], [96, 48]);
  // The frames keep their colours in order (red, green, blue).
  const centres = [];
  for (const frame of animation!.frames) {
    const img = await decodeWebp(buf(frame.file));
    const i = (24 * img.width + 48) * 4;
    centres.push(Array.from(img.data.slice(i, i + 3)).map((v) => v > 128 ? 1 : 0).join(""));
  }
  assertEquals(centres, ["100", "010", "001"]);
  // A still GIF asked for animated is still.
  const one = await renderThumbnail(gifOf(50, 50, 1), spec(32, 32, "crop", true), limits);
  assertEquals(one.animated, false);
});

Deno.test("renderThumbnail: an animated WebP is decoded frame by frame", async () => {
  const webp = await animatedWebpOf(120, 60, 2);
  const moving = await renderThumbnail(webp, spec(32, 32, "crop", true), limits);
  assertEquals([moving.contentType, moving.width, moving.height], ["image/webp", 32, 32]);
  assertEquals(splitAnimatedWebp(moving.bytes)?.frames.length, 2);
  const still = await renderThumbnail(webp, spec(32, 32, "crop"), limits);
  assertEquals([still.contentType, still.animated], ["image/png", false]);
  const first = await decodePng(buf(still.bytes));
  const [r, g, b, a] = first.data.slice(0, 4);
  assert(r > 240 && g < 16 && b < 16 && a === 255, `first frame pixel ${r},${g},${b},${a}`);
});

Deno.test("renderThumbnail: an animation past the pixel budget keeps the frames that fit", async () => {
  const gif = gifOf(100, 100, 5);
  const out = await renderThumbnail(gif, spec(32, 32, "crop", true), { maxPixels: 25_000 });
  assertEquals(splitAnimatedWebp(out.bytes)?.frames.length, 2);
  // And never more than MAX_ANIMATION_FRAMES, however small the frames.
  const many = gifOf(2, 2, MAX_ANIMATION_FRAMES + 50);
  const capped = await renderThumbnail(many, spec(32, 32, "crop", true), limits);
  assertEquals(splitAnimatedWebp(capped.bytes)?.frames.length, MAX_ANIMATION_FRAMES);
});

Deno.test("renderThumbnail refuses a decompression bomb before decoding it", async () => {
  // 50000 x 50000 x 4 bytes would be 10 GB of pixels from a 70-byte file.
  const bomb = pngBomb(50000, 50000);
  assert(bomb.length < 100);
  assertEquals(await failure(renderThumbnail(bomb, spec(32, 32, "crop"), limits)), "too_large");
  // The bound is the configured one.
  const png = await pngOf(100, 100);
  assertEquals(
    await failure(renderThumbnail(png, spec(32, 32, "crop"), { maxPixels: 9_999 })),
    "too_large",
  );
});

Deno.test("renderThumbnail: corrupt or non-image bytes are a ThumbnailError", async () => {
  const jpeg = await jpegOf(200, 200);
  const badTables = jpeg.slice();
  badTables.fill(0xff, 200);
  assertEquals(await failure(renderThumbnail(badTables, spec(32, 32, "crop"), limits)), "corrupt");
  const png = await pngOf(64, 64);
  const garbled = png.slice();
  garbled.fill(0x55, 40);
  assertEquals(await failure(renderThumbnail(garbled, spec(32, 32, "crop"), limits)), "corrupt");
  const pdf = new TextEncoder().encode("%PDF-1.7\n".repeat(10));
  assertEquals(await failure(renderThumbnail(pdf, spec(32, 32, "crop"), limits)), "unsupported");
  // A GIF frame claiming to be larger than its 10x10 screen.
  const gif = gifOf(10, 10, 1);
  const descriptor = gif.indexOf(0x2c, 13 + 12);
  new DataView(gif.buffer).setUint16(descriptor + 5, 60000, true);
  assertEquals(await failure(renderThumbnail(gif, spec(32, 32, "crop"), limits)), "corrupt");
});
