/**
 * The URL preview cache in KV (`urlpreview_cache`): one entry per (URL hash, hour), written with
 * a KV expiry so old hours go without a sweep. Expiry in KV is lazy (an expired entry may still
 * be read for a while), so each entry carries its own deadline and reads check it.
 */
import type { OpenGraph } from "../domain/media/open_graph.ts";
import type { UrlPreviewCache } from "../domain/ports/url_preview_cache.ts";
import { urlPreviewCacheKey } from "./schema.ts";

/** How long a preview is kept: two days, so `ts` from yesterday's messages still hits. */
export const PREVIEW_CACHE_MS = 48 * 60 * 60 * 1000;

interface CachedUrlPreview {
  readonly preview: OpenGraph;
  readonly expiresAt: number;
}

/** UrlPreviewCache over Deno KV. */
export class KvUrlPreviewCache implements UrlPreviewCache {
  readonly #kv: Deno.Kv;
  readonly #now: () => number;

  /** Build over `kv`; `now` is injectable for tests. */
  constructor(kv: Deno.Kv, now: () => number = Date.now) {
    this.#kv = kv;
    this.#now = now;
  }

  /** The unexpired preview of that hour, or null. */
  async get(urlKey: string, hour: number): Promise<OpenGraph | null> {
    const entry = await this.#kv.get<CachedUrlPreview>(urlPreviewCacheKey(urlKey, hour));
    const value = entry.value;
    return value !== null && value.expiresAt > this.#now() ? value.preview : null;
  }

  /** Store the preview of that hour for PREVIEW_CACHE_MS. */
  async put(urlKey: string, hour: number, preview: OpenGraph): Promise<void> {
    const record: CachedUrlPreview = { preview, expiresAt: this.#now() + PREVIEW_CACHE_MS };
    await this.#kv.set(urlPreviewCacheKey(urlKey, hour), record, { expireIn: PREVIEW_CACHE_MS });
  }
}
