/**
 * URL previews (`GET /_matrix/client/v1/media/preview_url`): fetch the page through the guarded
 * fetcher, read its OpenGraph, fetch its `og:image` the same way and store it as local media so
 * the client gets an `mxc://` it can read with its own access token (and never loads a tracking
 * URL itself). An image URL previews as the image itself, stored the same way.
 *
 * Previews are cached in KV per (URL, hour): the spec's `ts` asks for the preview as of a time,
 * so a request reads the cache entry of that hour when one exists, and otherwise fetches now
 * (the spec lets the server answer with a newer preview). The cache is shared by every process
 * on the database; concurrent requests for one URL in one process share one fetch.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { forbidden, MatrixError, tooLarge } from "../errors.ts";
import { OutboundError } from "../ports/outbound_http.ts";
import type { FetchedResource, UrlPreviewFetcher } from "../ports/url_preview_fetcher.ts";
import type { UrlPreviewCache } from "../ports/url_preview_cache.ts";
import { probeImage } from "./image_probe.ts";
import { decodePage, type OpenGraph, parseOpenGraph } from "./open_graph.ts";

/** One hour: the cache's granularity, and so the granularity `ts` is honoured at. */
export const PREVIEW_BUCKET_MS = 60 * 60 * 1000;
/** Longest URL previewed (Synapse's limit is the same order; KV keys hold only its hash). */
export const MAX_PREVIEW_URL_LENGTH = 2_048;
/** A preview's JSON is cut to this many bytes so it fits one KV value with room to spare. */
export const MAX_PREVIEW_JSON_BYTES = 48 * 1024;

/** Stores a preview's image as local media; MediaService satisfies it. */
export interface PreviewImageStore {
  upload(
    body: Uint8Array,
    info: { contentType: string; fileName?: string; declaredLength?: number; uploader: string },
  ): Promise<{ mxc: string }>;
}

/** The service's collaborators. */
export interface UrlPreviewDeps {
  readonly fetcher: UrlPreviewFetcher;
  readonly cache: UrlPreviewCache;
  readonly images: PreviewImageStore;
  readonly now?: () => number;
}

// Kept when a preview must be cut to fit: what clients show.
const ESSENTIAL = new Set([
  "og:title",
  "og:description",
  "og:image",
  "og:image:type",
  "og:image:width",
  "og:image:height",
  "matrix:image:size",
]);

/** Builds and caches URL previews. */
export class UrlPreviews {
  readonly #deps: UrlPreviewDeps;
  // Fetches under way in this process, so a link pasted into a busy room is fetched once; the
  // entry goes when the fetch settles (not a cache: the KV entry is the cache).
  readonly #inFlight = new Map<string, Promise<OpenGraph>>();

  /** Build over the guarded fetcher, the KV cache and the media store. */
  constructor(deps: UrlPreviewDeps) {
    this.#deps = deps;
  }

  /**
   * The preview of `url` for `userId`, as of `ts` (ms) when given: the cached preview of that
   * hour if there is one, else a fresh one. 400 for a URL that is not http(s); 403 for a
   * refused address; 502/504 when the site fails to answer; 413 when the page is too large.
   */
  async preview(userId: string, url: string, ts?: number): Promise<OpenGraph> {
    const target = validatePreviewUrl(url);
    const now = this.#now();
    const urlKey = previewUrlKey(target);
    const asked = ts === undefined || ts > now ? now : Math.max(0, ts);
    const cached = await this.#deps.cache.get(urlKey, bucketOf(asked));
    if (cached !== null) return cached;
    const nowBucket = bucketOf(now);
    if (asked < now && nowBucket !== bucketOf(asked)) {
      const current = await this.#deps.cache.get(urlKey, nowBucket);
      if (current !== null) return current;
    }
    const flightKey = `${urlKey}|${nowBucket}`;
    let flight = this.#inFlight.get(flightKey);
    if (flight === undefined) {
      flight = this.#build(userId, target).then(async (og) => {
        await this.#deps.cache.put(urlKey, nowBucket, og);
        return og;
      }).finally(() => this.#inFlight.delete(flightKey));
      this.#inFlight.set(flightKey, flight);
    }
    return await flight;
  }

  #now(): number {
    return this.#deps.now?.() ?? Date.now();
  }

  async #build(userId: string, url: string): Promise<OpenGraph> {
    const page = await this.#fetch(url);
    if (page.status < 200 || page.status > 299) {
      throw new MatrixError("M_UNKNOWN", 502, `The site answered ${page.status}`);
    }
    const type = mediaType(page.contentType);
    if (isImage(type, page.body)) {
      const og: OpenGraph = {};
      await this.#storeImage(og, userId, page);
      if (og["og:image"] === undefined) {
        throw new MatrixError("M_UNKNOWN", 502, "The image could not be stored");
      }
      const name = fileNameOf(page.url);
      if (name !== undefined) og["og:title"] = name;
      return og;
    }
    if (!isHtml(type, page.body)) return {};
    const og: OpenGraph = parseOpenGraph(decodePage(page.contentType, page.body), page.url);
    const imageUrl = og["og:image:secure_url"] ?? og["og:image:url"] ?? og["og:image"];
    for (const key of ["og:image", "og:image:url", "og:image:secure_url"]) delete og[key];
    if (typeof imageUrl === "string") {
      try {
        const image = await this.#fetch(imageUrl);
        if (image.status >= 200 && image.status <= 299) {
          await this.#storeImage(og, userId, image);
        }
      } catch (e) {
        // The page previews without its image: a broken or refused image is the site's problem.
        if (!(e instanceof MatrixError)) throw e;
      }
    }
    if (og["og:image"] === undefined) {
      // The page's own image facts describe an image the client will not get.
      for (const key of Object.keys(og)) if (key.startsWith("og:image")) delete og[key];
    } else {
      // The spec's dimensions are integers; a page's own (when the header gave none) are text.
      for (const key of ["og:image:width", "og:image:height"]) {
        const value = og[key];
        if (typeof value === "string") {
          if (/^\d{1,9}$/.test(value.trim())) og[key] = Number(value.trim());
          else delete og[key];
        }
      }
    }
    return boundPreview(og);
  }

  /** Fetch through the guard, mapping its failures to Matrix errors. */
  async #fetch(url: string): Promise<FetchedResource> {
    try {
      return await this.#deps.fetcher.get(url);
    } catch (e) {
      if (!(e instanceof OutboundError)) throw e;
      switch (e.failure) {
        case "refused":
          throw forbidden(`URL not allowed: ${e.message}`);
        case "too_large":
          throw tooLarge("The page is larger than previews fetch");
        case "timeout":
          throw new MatrixError("M_UNKNOWN", 504, "The site did not answer in time");
        case "unresolved":
          throw new MatrixError("M_UNKNOWN", 502, "The site's name does not resolve");
        default:
          throw new MatrixError("M_UNKNOWN", 502, "The site could not be reached");
      }
    }
  }

  /** Store `image` as local media and describe it in `og`; nothing when it is no image. */
  async #storeImage(og: OpenGraph, userId: string, image: FetchedResource): Promise<void> {
    const probe = probeImage(image.body);
    let type = mediaType(image.contentType);
    if (!type.startsWith("image/")) {
      if (probe === null) return;
      type = `image/${probe.format}`;
    }
    const fileName = fileNameOf(image.url);
    const { mxc } = await this.#deps.images.upload(image.body, {
      contentType: type,
      ...(fileName !== undefined ? { fileName } : {}),
      declaredLength: image.body.length,
      uploader: userId,
    });
    og["og:image"] = mxc;
    og["og:image:type"] = type;
    og["matrix:image:size"] = image.body.length;
    if (probe !== null) {
      og["og:image:width"] = probe.width;
      og["og:image:height"] = probe.height;
    }
  }
}

/** The URL to preview, or 400: only absolute http(s) URLs of bounded length. */
export function validatePreviewUrl(url: string): string {
  if (url.length > MAX_PREVIEW_URL_LENGTH) {
    throw new MatrixError("M_INVALID_PARAM", 400, "The URL is too long");
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MatrixError("M_INVALID_PARAM", 400, "Not a URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new MatrixError("M_INVALID_PARAM", 400, "Only http and https URLs are previewed");
  }
  // The fragment never reaches the site, so it must not split the cache either.
  parsed.hash = "";
  return parsed.href;
}

/** The cache key of a URL: its SHA-256 in hex (URLs can outgrow a KV key). */
export function previewUrlKey(url: string): string {
  return Array.from(sha256(new TextEncoder().encode(url)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The hour bucket of a time in ms. */
export function bucketOf(ms: number): number {
  return Math.floor(ms / PREVIEW_BUCKET_MS);
}

/** Drop non-essential properties, last first, until the preview's JSON fits one KV value. */
export function boundPreview(og: OpenGraph): OpenGraph {
  const out = { ...og };
  const size = () => new TextEncoder().encode(JSON.stringify(out)).length;
  const optional = Object.keys(out).filter((k) => !ESSENTIAL.has(k)).reverse();
  for (const key of optional) {
    if (size() <= MAX_PREVIEW_JSON_BYTES) break;
    delete out[key];
  }
  return out;
}

function mediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0].trim().toLowerCase();
}

function isImage(type: string, body: Uint8Array): boolean {
  return type.startsWith("image/") || (type === "" || type === "application/octet-stream") &&
      probeImage(body) !== null;
}

function isHtml(type: string, body: Uint8Array): boolean {
  if (type === "text/html" || type === "application/xhtml+xml") return true;
  if (type !== "" && type !== "text/plain" && type !== "application/octet-stream") return false;
  // Sites that send no type, or the wrong one: browsers sniff the start of the page.
  const head = new TextDecoder().decode(body.subarray(0, 512)).trimStart().toLowerCase();
  return head.startsWith("<!doctype html") || head.startsWith("<html");
}

function fileNameOf(url: string): string | undefined {
  try {
    const last = new URL(url).pathname.split("/").pop() ?? "";
    const name = decodeURIComponent(last);
    return name !== "" && name.length <= 255 ? name : undefined;
  } catch {
    return undefined;
  }
}
