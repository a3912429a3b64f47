/**
 * The port URL previews fetch pages and images through. The adapter
 * (outbound/url_preview_fetcher.ts) refuses private, loopback and link-local addresses after
 * DNS resolution on every redirect hop, and bounds the exchange by size and time; failures are
 * the OutboundError of domain/ports/outbound_http.ts.
 */

/** A fetched resource: where the redirects ended, its status, type and body. */
export interface FetchedResource {
  /** The URL of the last hop (relative links in the page resolve against it). */
  readonly url: string;
  readonly status: number;
  /** The Content-Type header as sent, or null. */
  readonly contentType: string | null;
  readonly body: Uint8Array;
}

/** Fetches what users ask to preview. */
export interface UrlPreviewFetcher {
  /** GET `url`, following redirects (each hop checked); throws OutboundError on failure. */
  get(url: string): Promise<FetchedResource>;
}
