/**
 * Images made in the test itself (no binary fixtures): JPEG, PNG and WebP from the codecs the
 * thumbnailer uses, GIF with omggif's writer, animated WebP with the container module, and a PNG
 * whose header claims a huge size (a decompression bomb).
 */
import { encode as encodeJpeg } from "@jsquash/jpeg";
import { encode as encodePng } from "@jsquash/png";
import { encode as encodeWebp } from "@jsquash/webp";
import { GifWriter } from "omggif";
import { joinAnimatedWebp } from "../../../domain/media/webp_container.ts";
import { pngFile } from "../../clients/media_images.ts";

/** RGBA pixels painted by `paint(x, y)`. */
export function pixels(
  width: number,
  height: number,
  paint: (x: number, y: number) => [number, number, number, number],
): ImageData {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(paint(x, y), (y * width + x) * 4);
  }
  return { data, width, height, colorSpace: "srgb" } as ImageData;
}

/** A smooth opaque gradient. */
export const gradient = (width: number, height: number) =>
  pixels(width, height, (x, y) => [(x * 255) / width, (y * 255) / height, 128, 255]);

/** A JPEG of `width` x `height`. */
export async function jpegOf(width: number, height: number): Promise<Uint8Array> {
  return new Uint8Array(await encodeJpeg(gradient(width, height), { quality: 90 }));
}

/** A PNG of the given pixels (a gradient by default). */
export async function pngOf(width: number, height: number, img?: ImageData): Promise<Uint8Array> {
  return new Uint8Array(await encodePng(img ?? gradient(width, height)));
}

/** A still WebP. */
export async function webpOf(width: number, height: number, img?: ImageData): Promise<Uint8Array> {
  return new Uint8Array(await encodeWebp(img ?? gradient(width, height), { quality: 90 }));
}

const FRAME_COLOURS = [0xff0000, 0x00ff00, 0x0000ff, 0xffffff];

/** A GIF with `frames` frames, each one solid colour (red, green, blue, white...). */
export function gifOf(width: number, height: number, frames: number): Uint8Array {
  const buf = new Uint8Array(1024 + frames * (width * height * 2 + 64));
  const writer = new GifWriter(buf, width, height, frames > 1 ? { loop: 0 } : {});
  for (let f = 0; f < frames; f++) {
    const index = new Array(width * height).fill(f % FRAME_COLOURS.length);
    writer.addFrame(0, 0, width, height, index, { palette: FRAME_COLOURS, delay: 10 });
  }
  return buf.slice(0, writer.end());
}

/** An animated WebP with `frames` solid-colour frames (lossless, so colours survive). */
export async function animatedWebpOf(
  width: number,
  height: number,
  frames: number,
): Promise<Uint8Array> {
  const files = [];
  for (let f = 0; f < frames; f++) {
    const c = FRAME_COLOURS[f % FRAME_COLOURS.length];
    const img = pixels(width, height, () => [c >> 16, (c >> 8) & 0xff, c & 0xff, 255]);
    files.push({ file: new Uint8Array(await encodeWebp(img, { lossless: 1 })), duration: 100 });
  }
  return joinAnimatedWebp(width, height, files);
}

/**
 * A small PNG whose IHDR claims `width` x `height` (8-bit RGBA): decoding it would allocate
 * width x height x 4 bytes before noticing the data is missing.
 */
export function pngBomb(width: number, height: number): Uint8Array {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return pngFile(ihdr, new Uint8Array([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
}
