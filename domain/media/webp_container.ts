/**
 * The RIFF container of WebP: splitting an animated WebP into stand-alone single-frame files
 * (the codec decodes still images only) and joining single-frame files into an animated one.
 * Only the container is handled here; the VP8/VP8L bitstreams go to the codec untouched.
 */

import { joinChunks } from "../bytes.ts";

/** One RIFF chunk. */
interface Chunk {
  type: string;
  data: Uint8Array;
}

/** One frame of an animated WebP as a stand-alone still WebP file and where it goes. */
export interface WebpFrame {
  /** A complete still WebP file holding the frame's bitstream. */
  file: Uint8Array;
  x: number;
  y: number;
  width: number;
  height: number;
  /** Milliseconds. */
  duration: number;
  /** Alpha-blend onto the canvas (false: overwrite the rectangle). */
  blend: boolean;
  /** Clear the rectangle to transparent before the next frame. */
  disposeToBackground: boolean;
}

/** An animated WebP's canvas and frames. */
export interface WebpAnimation {
  width: number;
  height: number;
  frames: WebpFrame[];
}

const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n));

function readChunks(bytes: Uint8Array, start: number, end: number): Chunk[] {
  const chunks: Chunk[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let i = start;
  while (i + 8 <= end) {
    const size = view.getUint32(i + 4, true);
    if (i + 8 + size > end) throw new Error("WebP chunk overruns the file");
    chunks.push({ type: ascii(bytes, i, 4), data: bytes.subarray(i + 8, i + 8 + size) });
    i += 8 + size + (size & 1);
  }
  return chunks;
}

function writeChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + data.length + (data.length & 1));
  for (let i = 0; i < 4; i++) out[i] = type.charCodeAt(i);
  new DataView(out.buffer).setUint32(4, data.length, true);
  out.set(data, 8);
  return out;
}

function riff(chunks: Uint8Array[]): Uint8Array {
  const body = joinChunks(chunks);
  const out = new Uint8Array(12 + body.length);
  out.set([0x52, 0x49, 0x46, 0x46]); // RIFF
  new DataView(out.buffer).setUint32(4, 4 + body.length, true);
  out.set([0x57, 0x45, 0x42, 0x50], 8); // WEBP
  out.set(body, 12);
  return out;
}

function vp8x(width: number, height: number, flags: number): Uint8Array {
  const d = new Uint8Array(10);
  d[0] = flags;
  const w = width - 1;
  const h = height - 1;
  d.set([w & 0xff, (w >> 8) & 0xff, (w >> 16) & 0xff, h & 0xff, (h >> 8) & 0xff, h >> 16], 4);
  return writeChunk("VP8X", d);
}

function u24(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff];
}

/** The frames of an animated WebP, or null when the file has no ANMF frames. */
export function splitAnimatedWebp(bytes: Uint8Array): WebpAnimation | null {
  const chunks = readChunks(bytes, 12, bytes.length);
  const header = chunks.find((c) => c.type === "VP8X");
  if (!header || header.data.length < 10) return null;
  const width = u24le(header.data, 4) + 1;
  const height = u24le(header.data, 7) + 1;
  const frames: WebpFrame[] = [];
  for (const chunk of chunks) {
    if (chunk.type !== "ANMF" || chunk.data.length < 16) continue;
    const d = chunk.data;
    const frame = {
      x: u24le(d, 0) * 2,
      y: u24le(d, 3) * 2,
      width: u24le(d, 6) + 1,
      height: u24le(d, 9) + 1,
      duration: u24le(d, 12),
      blend: (d[15] & 0x02) === 0,
      disposeToBackground: (d[15] & 0x01) !== 0,
    };
    if (frame.x + frame.width > width || frame.y + frame.height > height) {
      throw new Error("WebP frame outside the canvas");
    }
    const inner = readChunks(d, 16, d.length).filter((c) =>
      c.type === "ALPH" || c.type === "VP8 " || c.type === "VP8L"
    );
    const hasAlpha = inner.some((c) => c.type === "ALPH");
    const parts = inner.map((c) => writeChunk(c.type, c.data));
    const file = hasAlpha ? riff([vp8x(frame.width, frame.height, 0x10), ...parts]) : riff(parts);
    frames.push({ ...frame, file });
  }
  return frames.length > 0 ? { width, height, frames } : null;
}

/**
 * An animated WebP from still WebP files of the full canvas size, each shown for its duration
 * (ms), looping forever.
 */
export function joinAnimatedWebp(
  width: number,
  height: number,
  frames: { file: Uint8Array; duration: number }[],
): Uint8Array {
  const anmf = frames.map(({ file, duration }) => {
    const inner = readChunks(file, 12, file.length)
      .filter((c) => c.type === "ALPH" || c.type === "VP8 " || c.type === "VP8L")
      .map((c) => writeChunk(c.type, c.data));
    // Full-canvas frames that replace the previous one: no blending, no disposal.
    const head = new Uint8Array([
      0,
      0,
      0,
      0,
      0,
      0,
      ...u24(width - 1),
      ...u24(height - 1),
      ...u24(Math.min(duration, 0xffffff)),
      0x02,
    ]);
    return writeChunk("ANMF", joinChunks([head, ...inner]));
  });
  const anim = writeChunk("ANIM", new Uint8Array([0, 0, 0, 0, 0, 0]));
  return riff([vp8x(width, height, 0x10 | 0x02), anim, ...anmf]);
}
