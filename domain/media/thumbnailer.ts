/**
 * Renders one thumbnail from an image's bytes with the Squoosh codecs (@jsquash: libjpeg-turbo,
 * libpng, libwebp and Squoosh's resizer compiled to WebAssembly) and omggif for GIF, all of which
 * run on Deno and Deno Deploy without native add-ons. Animated GIF and WebP become animated WebP
 * when asked for (the spec prefers WebP for animation); everything else becomes PNG, or JPEG for
 * a JPEG source.
 */
import { decode as decodeJpeg, encode as encodeJpeg } from "@jsquash/jpeg";
import { decode as decodePng, encode as encodePng } from "@jsquash/png";
import { decode as decodeWebp, encode as encodeWebp } from "@jsquash/webp";
import resize from "@jsquash/resize";
import { GifReader } from "omggif";
import { type ImageProbe, probeImage } from "./image_probe.ts";
import {
  planThumbnail,
  type ThumbnailBox,
  type ThumbnailMethod,
  type ThumbnailPlan,
} from "./thumbnail_sizes.ts";
import { joinAnimatedWebp, splitAnimatedWebp } from "./webp_container.ts";

/** Why an image could not be thumbnailed. */
export type ThumbnailFailure =
  /** Not an image format we decode (PDF, SVG, text...). */
  | "unsupported"
  /** The header claims more pixels than the decode bound. */
  | "too_large"
  /** The bytes do not decode. */
  | "corrupt"
  /** Decoding and resizing took longer than allowed (see thumbnail_renderer.ts). */
  | "timeout";

/** Thrown by `renderThumbnail` when the media cannot be thumbnailed. */
export class ThumbnailError extends Error {
  /** Build the error for `reason`. */
  constructor(readonly reason: ThumbnailFailure, message: string) {
    super(message);
    this.name = "ThumbnailError";
  }
}

/** What to render. */
export interface ThumbnailSpec {
  box: ThumbnailBox;
  method: ThumbnailMethod;
  /** Animate the thumbnail when the source is an animated GIF or WebP. */
  animated: boolean;
}

/** A rendered thumbnail. */
export interface RenderedThumbnail {
  bytes: Uint8Array;
  contentType: string;
  width: number;
  height: number;
  /** True when it has several frames. */
  animated: boolean;
}

/** Bounds on decoding. */
export interface DecodeLimits {
  /**
   * Pixels of one frame, checked against the header before decoding; the frames decoded for an
   * animation together stay under this too (later frames are dropped).
   */
  maxPixels: number;
}

/** One full-canvas RGBA frame. */
interface Frame {
  data: Uint8ClampedArray;
  width: number;
  height: number;
  /** Milliseconds. */
  duration: number;
}

/** The fewest milliseconds a frame is shown: browsers clamp shorter GIF delays the same way. */
const MIN_FRAME_MS = 20;

/** Renders `spec` from `bytes`; throws `ThumbnailError` for what cannot be thumbnailed. */
export async function renderThumbnail(
  bytes: Uint8Array,
  spec: ThumbnailSpec,
  limits: DecodeLimits,
): Promise<RenderedThumbnail> {
  const probe = probeImage(bytes);
  if (!probe) throw new ThumbnailError("unsupported", "The media is not an image we can read");
  if (probe.width < 1 || probe.height < 1) {
    throw new ThumbnailError("corrupt", "The image has no pixels");
  }
  if (probe.width * probe.height > limits.maxPixels) {
    throw new ThumbnailError("too_large", "The image has too many pixels to thumbnail");
  }
  const animate = spec.animated && probe.animated &&
    (probe.format === "gif" || probe.format === "webp");
  let frames: Frame[];
  try {
    frames = await decodeFrames(bytes, probe, animate, limits.maxPixels);
  } catch (e) {
    if (e instanceof ThumbnailError) throw e;
    throw new ThumbnailError("corrupt", "The image could not be decoded");
  }
  const { width, height } = frames[0];
  const plan = planThumbnail(width, height, spec.box, spec.method);
  const scaled: Frame[] = [];
  for (const frame of frames) scaled.push(await applyPlan(frame, plan));

  if (scaled.length > 1) {
    const files = [];
    for (const f of scaled) {
      files.push({ file: new Uint8Array(await encodeWebp(imageData(f), { quality: 80 })), ...f });
    }
    return {
      bytes: joinAnimatedWebp(plan.width, plan.height, files),
      contentType: "image/webp",
      width: plan.width,
      height: plan.height,
      animated: true,
    };
  }
  const still = imageData(scaled[0]);
  const jpeg = probe.format === "jpeg";
  const encoded = jpeg ? await encodeJpeg(still, { quality: 80 }) : await encodePng(still);
  return {
    bytes: new Uint8Array(encoded),
    contentType: jpeg ? "image/jpeg" : "image/png",
    width: plan.width,
    height: plan.height,
    animated: false,
  };
}

function imageData(f: { data: Uint8ClampedArray; width: number; height: number }): ImageData {
  return { data: f.data, width: f.width, height: f.height, colorSpace: "srgb" } as ImageData;
}

/** The codecs decode to 8-bit sRGBA; `ImageData`'s type also allows float data. */
function rgba(img: ImageData): Uint8ClampedArray {
  return img.data as Uint8ClampedArray;
}

function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

async function decodeFrames(
  bytes: Uint8Array,
  probe: ImageProbe,
  animate: boolean,
  maxPixels: number,
): Promise<Frame[]> {
  const still = (img: ImageData): Frame[] => {
    // The decoder's dimensions, not the header's, are what the pixels are; they must agree.
    if (img.width * img.height > maxPixels) {
      throw new ThumbnailError("too_large", "The image has too many pixels to thumbnail");
    }
    return [{ data: rgba(img), width: img.width, height: img.height, duration: 0 }];
  };
  switch (probe.format) {
    case "jpeg":
      return still(await decodeJpeg(arrayBuffer(bytes)));
    case "png":
      return still(await decodePng(arrayBuffer(bytes)));
    case "gif":
      return decodeGif(bytes, animate ? Infinity : 1, maxPixels);
    case "webp": {
      const animation = probe.animated ? splitAnimatedWebp(bytes) : null;
      if (!animation) return still(await decodeWebp(arrayBuffer(bytes)));
      return await decodeAnimatedWebp(animation, animate ? Infinity : 1, maxPixels);
    }
  }
}

/**
 * Frames an animated thumbnail keeps at most: past this a thumbnail is the animation's opening
 * (a GIF of thousands of 1x1 frames would otherwise cost thousands of encodes).
 */
export const MAX_ANIMATION_FRAMES = 200;

/** Most frames to decode while the pixel budget lasts. */
function frameBudget(width: number, height: number, wanted: number, maxPixels: number): number {
  const fit = Math.floor(maxPixels / (width * height));
  return Math.max(1, Math.min(wanted, fit, MAX_ANIMATION_FRAMES));
}

function decodeGif(bytes: Uint8Array, wanted: number, maxPixels: number): Frame[] {
  const reader = new GifReader(bytes);
  const { width, height } = reader;
  if (width < 1 || height < 1) throw new ThumbnailError("corrupt", "The GIF has no pixels");
  const count = Math.min(reader.numFrames(), frameBudget(width, height, wanted, maxPixels));
  if (count < 1) throw new ThumbnailError("corrupt", "The GIF has no frames");
  const canvas = new Uint8ClampedArray(width * height * 4);
  const frames: Frame[] = [];
  for (let i = 0; i < count; i++) {
    const info = reader.frameInfo(i);
    // A frame larger than the screen would make the decoder allocate and write past it.
    if (info.x + info.width > width || info.y + info.height > height) {
      throw new ThumbnailError("corrupt", "A GIF frame lies outside the image");
    }
    const previous = info.disposal === 3 ? canvas.slice() : null;
    reader.decodeAndBlitFrameRGBA(i, canvas);
    frames.push({
      data: canvas.slice(),
      width,
      height,
      duration: Math.max(MIN_FRAME_MS, info.delay * 10),
    });
    if (info.disposal === 2) clearRect(canvas, width, info);
    else if (previous) canvas.set(previous);
  }
  return frames;
}

async function decodeAnimatedWebp(
  animation: NonNullable<ReturnType<typeof splitAnimatedWebp>>,
  wanted: number,
  maxPixels: number,
): Promise<Frame[]> {
  const { width, height } = animation;
  const count = Math.min(animation.frames.length, frameBudget(width, height, wanted, maxPixels));
  const canvas = new Uint8ClampedArray(width * height * 4);
  const frames: Frame[] = [];
  for (const frame of animation.frames.slice(0, count)) {
    const img = await decodeWebp(arrayBuffer(frame.file));
    if (img.width !== frame.width || img.height !== frame.height) {
      throw new ThumbnailError("corrupt", "A WebP frame does not match its header");
    }
    drawFrame(canvas, width, img, frame.x, frame.y, frame.blend);
    frames.push({
      data: canvas.slice(),
      width,
      height,
      duration: Math.max(MIN_FRAME_MS, frame.duration),
    });
    if (frame.disposeToBackground) clearRect(canvas, width, frame);
  }
  return frames;
}

function clearRect(
  canvas: Uint8ClampedArray,
  canvasWidth: number,
  r: { x: number; y: number; width: number; height: number },
) {
  for (let y = r.y; y < r.y + r.height; y++) {
    canvas.fill(0, (y * canvasWidth + r.x) * 4, (y * canvasWidth + r.x + r.width) * 4);
  }
}

/** Draws `img` at (x, y), alpha-blended ("source over") or replacing the rectangle. */
function drawFrame(
  canvas: Uint8ClampedArray,
  canvasWidth: number,
  img: ImageData,
  x0: number,
  y0: number,
  blend: boolean,
) {
  const src = img.data;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 4;
      const d = ((y0 + y) * canvasWidth + x0 + x) * 4;
      const a = src[s + 3] / 255;
      if (!blend || a === 1) {
        canvas[d] = src[s];
        canvas[d + 1] = src[s + 1];
        canvas[d + 2] = src[s + 2];
        canvas[d + 3] = src[s + 3];
      } else if (a > 0) {
        const da = canvas[d + 3] / 255;
        const outA = a + da * (1 - a);
        for (let c = 0; c < 3; c++) {
          canvas[d + c] = (src[s + c] * a + canvas[d + c] * da * (1 - a)) / outA;
        }
        canvas[d + 3] = outA * 255;
      }
    }
  }
}

/** Crops the plan's source rectangle and resizes it to the plan's output size. */
async function applyPlan(frame: Frame, plan: ThumbnailPlan): Promise<Frame> {
  let { data } = frame;
  if (plan.sw !== frame.width || plan.sh !== frame.height) {
    data = new Uint8ClampedArray(plan.sw * plan.sh * 4);
    for (let y = 0; y < plan.sh; y++) {
      const from = ((plan.sy + y) * frame.width + plan.sx) * 4;
      data.set(frame.data.subarray(from, from + plan.sw * 4), y * plan.sw * 4);
    }
  }
  const source = { data, width: plan.sw, height: plan.sh, duration: frame.duration };
  if (plan.width === plan.sw && plan.height === plan.sh) return source;
  const out = await resize(imageData(source), {
    width: plan.width,
    height: plan.height,
    fitMethod: "stretch",
  });
  return { data: rgba(out), width: out.width, height: out.height, duration: frame.duration };
}
