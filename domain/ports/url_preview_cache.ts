/**
 * The URL preview cache: one preview per (URL, hour), shared by every process on the database.
 * Entries expire on their own (the adapter sets a KV expiry), so the cache needs no cleanup job.
 */
import type { OpenGraph } from "../media/open_graph.ts";

/** Previews by URL key (the URL's SHA-256 in hex) and hour bucket (ms / 3,600,000). */
export interface UrlPreviewCache {
  /** The preview stored for that hour, or null. */
  get(urlKey: string, hour: number): Promise<OpenGraph | null>;
  /** Store the preview of that hour (the last writer wins: both fetched the same hour). */
  put(urlKey: string, hour: number, preview: OpenGraph): Promise<void>;
}
