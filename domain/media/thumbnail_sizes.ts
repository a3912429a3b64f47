/**
 * Which thumbnail a request gets: the spec's recommended sizes, the smallest at least as large
 * as asked, and the output dimensions for `crop` and `scale` without upscaling.
 */

/** `crop` fills the box and trims the overflow; `scale` fits inside the box. */
export type ThumbnailMethod = "crop" | "scale";

/** One thumbnail box. */
export interface ThumbnailBox {
  width: number;
  height: number;
}

/**
 * The spec's (and Synapse's) default sizes, smallest first. Every request maps onto one of these
 * boxes, so a media has at most 5 boxes x 2 methods x 2 (animated or not) stored thumbnails.
 */
export const THUMBNAIL_BOXES: readonly ThumbnailBox[] = [
  { width: 32, height: 32 },
  { width: 96, height: 96 },
  { width: 320, height: 240 },
  { width: 640, height: 480 },
  { width: 800, height: 600 },
];

/** The smallest box at least as large as requested in both dimensions, else the largest box. */
export function chooseThumbnailBox(width: number, height: number): ThumbnailBox {
  for (const box of THUMBNAIL_BOXES) {
    if (box.width >= width && box.height >= height) return box;
  }
  return THUMBNAIL_BOXES[THUMBNAIL_BOXES.length - 1];
}

/** Where in the source to read and how large the output is. */
export interface ThumbnailPlan {
  /** Source rectangle (crop takes the centred part with the box's aspect ratio). */
  sx: number;
  sy: number;
  sw: number;
  sh: number;
  /** Output dimensions. */
  width: number;
  height: number;
}

/**
 * The source rectangle and output size for an image of `w` x `h` in `box`. Never upscales
 * (the spec says servers SHOULD NOT): an image smaller than the box keeps its own size
 * (for crop, trimmed to the box's aspect ratio only where it overflows the box).
 */
export function planThumbnail(
  w: number,
  h: number,
  box: ThumbnailBox,
  method: ThumbnailMethod,
): ThumbnailPlan {
  if (method === "scale") {
    const s = Math.min(1, box.width / w, box.height / h);
    return {
      sx: 0,
      sy: 0,
      sw: w,
      sh: h,
      width: Math.max(1, Math.round(w * s)),
      height: Math.max(1, Math.round(h * s)),
    };
  }
  // Cover: the scale at which the image fills the box in both directions, at most 1.
  const s = Math.min(1, Math.max(box.width / w, box.height / h));
  const width = Math.max(1, Math.min(box.width, Math.round(w * s)));
  const height = Math.max(1, Math.min(box.height, Math.round(h * s)));
  const sw = Math.min(w, Math.round(width / s));
  const sh = Math.min(h, Math.round(height / s));
  return {
    sx: Math.floor((w - sw) / 2),
    sy: Math.floor((h - sh) / 2),
    sw,
    sh,
    width,
    height,
  };
}
