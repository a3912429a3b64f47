/**
 * The port for fetching another server's media (the adapter is outbound/remote_media_client.ts:
 * the federation media endpoints, their `multipart/mixed` answers and `Location` redirects, and
 * the legacy media API for servers that predate them). The MediaService caches what it returns.
 */

/** A remote media item as it arrives: its type, its name if the origin gave one, its bytes. */
export interface RemoteMediaFile {
  readonly contentType: string;
  readonly fileName?: string;
  /**
   * The bytes, streamed; at most `maxBytes` of them (more is an error of the stream, as is an
   * answer cut short, so a partial file never looks complete).
   */
  readonly stream: ReadableStream<Uint8Array>;
}

/** Fetches media from the server in its `mxc://` URI. */
export interface RemoteMedia {
  /**
   * The media `mediaId` of `server`; null when that server says it has no such media. Throws a
   * MatrixError for what the client should hear instead: 502 M_TOO_LARGE past `maxBytes`,
   * 504 M_NOT_YET_UPLOADED, 502 when the server cannot be reached or answers nonsense.
   */
  fetch(
    server: string,
    mediaId: string,
    options: { readonly maxBytes: number },
  ): Promise<RemoteMediaFile | null>;
}
