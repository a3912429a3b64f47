/**
 * The RemoteMedia adapter: another server's media over federation. First the v1.11 federation
 * endpoint (`GET /_matrix/federation/v1/media/download/{mediaId}`, signed), whose answer is
 * `multipart/mixed`: a JSON part, then either the bytes or a `Location` to fetch them from
 * (followed unsigned, through the address guard, by the transport's `followLocation`). A server
 * that does not know that endpoint (Synapse before 1.111, answering M_UNRECOGNIZED) is asked on
 * the legacy media API, `/_matrix/media/v3/download/{server}/{mediaId}?allow_remote=false`, as
 * servers did before. Everything streams: bytes go on to the cache as they arrive.
 */
import { MatrixError } from "../domain/errors.ts";
import {
  type FederationStreamResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../domain/ports/federation_transport.ts";
import type { RemoteMedia, RemoteMediaFile } from "../domain/ports/remote_media.ts";
import { multipartBoundary, MultipartError, MultipartReader } from "../domain/media/multipart.ts";
import { dispositionFileName } from "../domain/media/content_disposition.ts";
import { parseServerName } from "../domain/protocol/identifiers.ts";
import { readStreamUpTo } from "../domain/bytes.ts";

/** A media ID we may put in a path (the same rule as for our own). */
const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;
/** The JSON part and the part headers: small by the spec ("currently always `{}`"). */
const MAX_METADATA_BYTES = 64 * 1024;
/** Room for the multipart framing around the media bytes. */
const FRAMING_BYTES = 128 * 1024;
/** Error bodies are read for their errcode only. */
const MAX_ERROR_BYTES = 64 * 1024;
/** A download may be large and slow; this bounds the whole transfer. */
const DEFAULT_TIMEOUT_MS = 120_000;
/** How long the origin may take to have the media, asked for in `timeout_ms`. */
const REMOTE_WAIT_MS = 20_000;
/** A content type we keep as the origin sent it; anything else is stored as octet-stream. */
const CONTENT_TYPE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+(\s*;.*)?$/;

/** Settings of the adapter. */
export interface FederationRemoteMediaOptions {
  /** The whole fetch, the body included; default 120 s. */
  readonly timeoutMs?: number;
}

/** 502 for what the origin did wrong or could not do; the client cannot fix it by retrying. */
function badGateway(server: string, message: string): MatrixError {
  return new MatrixError("M_UNKNOWN", 502, `Could not fetch media from ${server}: ${message}`);
}

function remoteTooLarge(): MatrixError {
  return new MatrixError("M_TOO_LARGE", 502, "The remote content is too large for this server");
}

/** The MatrixError a transport failure means for the client. */
function fromUnreachable(server: string, e: FederationUnreachable): MatrixError {
  if (e.failure === "too_large") return remoteTooLarge();
  if (e.failure === "timeout") {
    return new MatrixError("M_UNKNOWN", 504, `Timed out fetching media from ${server}`);
  }
  return badGateway(server, e.failure === "refused" ? "the address is not allowed" : e.failure);
}

/** The errcode of an error answer, when it has one. */
async function errcodeOf(response: FederationStreamResponse): Promise<string | undefined> {
  try {
    const bytes = await readStreamUpTo(response.body, MAX_ERROR_BYTES);
    if (bytes === null) return undefined;
    const body = JSON.parse(new TextDecoder().decode(bytes));
    return typeof body?.errcode === "string" ? body.errcode : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `stream` passed through with at most `maxBytes` bytes; more, or a failure of the source,
 * errors it with the MatrixError the client should see.
 */
function bounded(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  server: string,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let size = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (e) {
        controller.error(
          e instanceof FederationUnreachable
            ? fromUnreachable(server, e)
            : badGateway(server, e instanceof MultipartError ? e.message : "transfer failed"),
        );
        return;
      }
      if (next.done) return controller.close();
      size += next.value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        controller.error(remoteTooLarge());
        return;
      }
      controller.enqueue(next.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** The content type to store: the origin's when well-formed, else octet-stream. */
function contentTypeOf(value: string | null): string {
  const trimmed = value?.trim() ?? "";
  return trimmed.length <= 255 && CONTENT_TYPE.test(trimmed) ? trimmed : "application/octet-stream";
}

/** The media file a part's or response's headers and body describe. */
function fileFrom(
  headers: Headers,
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  server: string,
): RemoteMediaFile {
  const fileName = dispositionFileName(headers.get("content-disposition"));
  return {
    contentType: contentTypeOf(headers.get("content-type")),
    ...(fileName !== undefined ? { fileName } : {}),
    stream: bounded(body, maxBytes, server),
  };
}

/** Fetches remote media through the federation transport. */
export class FederationRemoteMedia implements RemoteMedia {
  readonly #transport: FederationTransport;
  readonly #timeoutMs: number;

  /** Build over the server's federation transport. */
  constructor(transport: FederationTransport, options: FederationRemoteMediaOptions = {}) {
    this.#transport = transport;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** See RemoteMedia.fetch: the federation endpoint first, the legacy media API after. */
  async fetch(
    server: string,
    mediaId: string,
    options: { readonly maxBytes: number },
  ): Promise<RemoteMediaFile | null> {
    if (!MEDIA_ID.test(mediaId) || !parseServerName(server).ok) return null;
    const deadline = Date.now() + this.#timeoutMs;
    const id = encodeURIComponent(mediaId);
    try {
      const federation = await this.#get(
        server,
        `/_matrix/federation/v1/media/download/${id}?timeout_ms=${REMOTE_WAIT_MS}`,
        options.maxBytes + FRAMING_BYTES,
        deadline,
      );
      const answer = await this.#answer(server, federation, options.maxBytes, deadline, true);
      if (answer !== "unrecognized") return answer;
      // Servers without the federation media endpoints serve the legacy API to anyone.
      const legacy = `/_matrix/media/v3/download/${encodeURIComponent(server)}/${id}` +
        `?allow_remote=false&timeout_ms=${REMOTE_WAIT_MS}`;
      const response = await this.#get(server, legacy, options.maxBytes, deadline);
      const file = await this.#answer(server, response, options.maxBytes, deadline, false);
      if (file === "unrecognized") throw badGateway(server, "no media API");
      return file;
    } catch (e) {
      if (e instanceof FederationUnreachable) throw fromUnreachable(server, e);
      throw e;
    }
  }

  async #get(
    server: string,
    path: string,
    maxResponseBytes: number,
    deadline: number,
  ): Promise<FederationStreamResponse> {
    if (this.#transport.requestStream === undefined) {
      throw badGateway(server, "this server's transport cannot carry media");
    }
    return await this.#transport.requestStream({
      method: "GET",
      destination: server,
      path,
      maxResponseBytes,
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
  }

  /**
   * What a response means: the file (multipart for the federation endpoint, plain for the
   * legacy one), null for not found, "unrecognized" when the endpoint is unknown there.
   */
  async #answer(
    server: string,
    response: FederationStreamResponse,
    maxBytes: number,
    deadline: number,
    multipart: boolean,
  ): Promise<RemoteMediaFile | null | "unrecognized"> {
    const { status } = response;
    if (status >= 300 && status < 400) {
      const location = response.headers.get("location");
      await response.body.cancel();
      if (location === null) throw badGateway(server, `answered ${status}`);
      return await this.#follow(server, location, maxBytes, deadline);
    }
    if (status === 200) {
      if (!multipart) return fileFrom(response.headers, response.body, maxBytes, server);
      return await this.#multipart(server, response, maxBytes, deadline);
    }
    const errcode = await errcodeOf(response);
    if (errcode === "M_UNRECOGNIZED" && (status === 400 || status === 404 || status === 405)) {
      return "unrecognized";
    }
    // A 404 or 405 without a Matrix body comes from a server (or proxy) without the endpoint.
    if (errcode === undefined && (status === 404 || status === 405) && multipart) {
      return "unrecognized";
    }
    if (status === 404) return null;
    if (errcode === "M_TOO_LARGE" || status === 413) throw remoteTooLarge();
    if (errcode === "M_NOT_YET_UPLOADED" || status === 504) {
      throw new MatrixError("M_NOT_YET_UPLOADED", 504, "The remote content is not yet uploaded");
    }
    throw badGateway(server, `answered ${status}${errcode ? ` ${errcode}` : ""}`);
  }

  /** Read the federation endpoint's two parts: metadata, then the bytes or a Location. */
  async #multipart(
    server: string,
    response: FederationStreamResponse,
    maxBytes: number,
    deadline: number,
  ): Promise<RemoteMediaFile | null> {
    const boundary = multipartBoundary(response.headers.get("content-type"));
    if (boundary === null) {
      await response.body.cancel();
      throw badGateway(server, "the answer is not multipart/mixed");
    }
    const reader = new MultipartReader(response.body, boundary);
    try {
      const metadata = await reader.next();
      if (metadata === null) throw badGateway(server, "the answer has no parts");
      const json = await readStreamUpTo(metadata.body, MAX_METADATA_BYTES);
      if (json === null) throw badGateway(server, "the metadata part is too large");
      try {
        JSON.parse(new TextDecoder().decode(json));
      } catch {
        throw badGateway(server, "the metadata part is not JSON");
      }
      const media = await reader.next();
      if (media === null) throw badGateway(server, "the answer has no media part");
      const location = media.headers.get("location");
      if (location !== null) {
        // The bytes are elsewhere: nothing more of this answer is needed.
        await reader.cancel();
        return await this.#follow(server, location, maxBytes, deadline);
      }
      return fileFrom(media.headers, media.body, maxBytes, server);
    } catch (e) {
      await reader.cancel();
      if (e instanceof MultipartError) throw badGateway(server, e.message);
      throw e;
    }
  }

  /** Fetch the bytes from where the origin pointed: unsigned, every hop address-checked. */
  async #follow(
    server: string,
    location: string,
    maxBytes: number,
    deadline: number,
  ): Promise<RemoteMediaFile> {
    if (this.#transport.followLocation === undefined) {
      throw badGateway(server, "this server cannot follow media redirects");
    }
    const response = await this.#transport.followLocation(location, {
      maxResponseBytes: maxBytes,
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
    if (response.status !== 200) {
      await response.body.cancel();
      if (response.status === 404) throw badGateway(server, "the redirect led to 404");
      throw badGateway(server, `the redirect answered ${response.status}`);
    }
    return fileFrom(response.headers, response.body, maxBytes, server);
  }
}
