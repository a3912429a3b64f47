/**
 * Reads an image's format, dimensions and whether it is animated from its header bytes alone,
 * so a decompression bomb (a tiny file claiming 50000x50000 pixels) is refused before any
 * decoder allocates its pixels.
 */

/** The formats the thumbnailer decodes. */
export type ImageFormat = "jpeg" | "png" | "gif" | "webp";

/** What the header says about an image. */
export interface ImageProbe {
  format: ImageFormat;
  width: number;
  height: number;
  /** More than one frame (GIF with several image descriptors, APNG, WebP with ANIM). */
  animated: boolean;
}

const u16be = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u16le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b: Uint8Array, i: number) =>
  ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
const u32le = (b: Uint8Array, i: number) =>
  (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16)) + ((b[i + 3] << 24) >>> 0);
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n));

/** The header's format, size and animation flag, or null when it is not an image we decode. */
export function probeImage(bytes: Uint8Array): ImageProbe | null {
  if (bytes.length < 12) return null;
  if (bytes[0] === 0x89 && ascii(bytes, 1, 3) === "PNG") return probePng(bytes);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return probeJpeg(bytes);
  if (ascii(bytes, 0, 4) === "GIF8") return probeGif(bytes);
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") return probeWebp(bytes);
  return null;
}

function probePng(b: Uint8Array): ImageProbe | null {
  if (b.length < 24 || ascii(b, 12, 4) !== "IHDR") return null;
  // An acTL chunk before the first IDAT marks an APNG.
  let animated = false;
  for (let i = 8; i + 8 <= b.length;) {
    const length = u32be(b, i);
    const type = ascii(b, i + 4, 4);
    if (type === "acTL") animated = true;
    if (type === "IDAT" || type === "IEND") break;
    i += 12 + length;
  }
  return { format: "png", width: u32be(b, 16), height: u32be(b, 20), animated };
}

function probeJpeg(b: Uint8Array): ImageProbe | null {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    // Standalone markers carry no length.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) {
      i += 2;
      continue;
    }
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
      marker !== 0xcc;
    if (isFrame) {
      return { format: "jpeg", height: u16be(b, i + 5), width: u16be(b, i + 7), animated: false };
    }
    i += 2 + u16be(b, i + 2);
  }
  return null;
}

function probeGif(b: Uint8Array): ImageProbe | null {
  const width = u16le(b, 6);
  const height = u16le(b, 8);
  return { format: "gif", width, height, animated: countGifFrames(b, 2) > 1 };
}

/** Counts a GIF's image descriptors, stopping once `stopAt` are seen. */
function countGifFrames(b: Uint8Array, stopAt: number): number {
  let i = 13;
  if (b[10] & 0x80) i += 3 * (1 << ((b[10] & 0x07) + 1));
  let frames = 0;
  while (i < b.length) {
    const block = b[i];
    if (block === 0x3b) break;
    if (block === 0x21) {
      i += 2;
      i = skipSubBlocks(b, i);
    } else if (block === 0x2c) {
      if (++frames >= stopAt) break;
      const flags = b[i + 9];
      i += 10;
      if (flags & 0x80) i += 3 * (1 << ((flags & 0x07) + 1));
      i += 1; // LZW minimum code size
      i = skipSubBlocks(b, i);
    } else break;
  }
  return frames;
}

function skipSubBlocks(b: Uint8Array, i: number): number {
  while (i < b.length && b[i] !== 0) i += b[i] + 1;
  return i + 1;
}

function probeWebp(b: Uint8Array): ImageProbe | null {
  const chunk = ascii(b, 12, 4);
  if (chunk === "VP8X" && b.length >= 30) {
    return {
      format: "webp",
      width: u24le(b, 24) + 1,
      height: u24le(b, 27) + 1,
      animated: (b[20] & 0x02) !== 0,
    };
  }
  if (chunk === "VP8L" && b.length >= 25 && b[20] === 0x2f) {
    const bits = u32le(b, 21);
    return {
      format: "webp",
      width: (bits & 0x3fff) + 1,
      height: ((bits >>> 14) & 0x3fff) + 1,
      animated: false,
    };
  }
  if (chunk === "VP8 " && b.length >= 30 && b[23] === 0x9d && b[24] === 0x01 && b[25] === 0x2a) {
    return {
      format: "webp",
      width: u16le(b, 26) & 0x3fff,
      height: u16le(b, 28) & 0x3fff,
      animated: false,
    };
  }
  return null;
}
