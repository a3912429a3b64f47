/**
 * The port for requests to other homeservers over federation. The adapter (in `outbound/`)
 * resolves the destination (well-known, SRV, IP literals, explicit ports, default 8448),
 * speaks HTTPS, refuses private addresses unless allowed, and signs each request with the
 * X-Matrix scheme (destination included) unless `signed` is false (key fetches).
 */
import type { JsonValue } from "../protocol/json.ts";

/** One request to a homeserver's federation or key API. */
export interface FederationRequest {
  readonly method: "GET" | "PUT" | "POST";
  /** The server name of the destination, as in user and room IDs (may carry a port). */
  readonly destination: string;
  /** Path and query, already percent-encoded, e.g. `/_matrix/federation/v1/event/%24abc`. */
  readonly path: string;
  /** A JSON body (PUT/POST); it is also what the X-Matrix signature covers. */
  readonly body?: JsonValue;
  /** Sign with X-Matrix (default true); `/_matrix/key/v2/server` needs no signature. */
  readonly signed?: boolean;
  /** Give up after this long (default: the adapter's own, about 30 s). */
  readonly timeoutMs?: number;
  /** Refuse a larger response body (`too_large`); default: the adapter's own, 64 MiB. */
  readonly maxResponseBytes?: number;
}

/** A response from the destination: its status and its body parsed as JSON (null when not JSON). */
export interface FederationResponse {
  readonly status: number;
  readonly body: JsonValue | null;
}

/**
 * Why a request got no response:
 * - `refused`: the destination is not allowed (federation off, a private address, a bad name);
 * - `unresolved`: the name did not resolve to an address;
 * - `timeout`, `too_large`, `network`, `tls`: the attempt failed; a later one may succeed.
 */
export type FederationFailure =
  | "refused"
  | "unresolved"
  | "timeout"
  | "too_large"
  | "network"
  | "tls";

/** A request that got no usable response; `failure` says whether retrying makes sense. */
export class FederationUnreachable extends Error {
  /** Build from the failure kind, the destination, and a message for logs. */
  constructor(
    readonly failure: FederationFailure,
    readonly destination: string,
    message: string,
  ) {
    super(`${destination}: ${message}`);
    this.name = "FederationUnreachable";
  }
}

/**
 * A GET whose answer is streamed rather than parsed (media): resolved, guarded and signed as
 * `FederationRequest` is.
 */
export interface FederationStreamRequest {
  readonly method: "GET";
  readonly destination: string;
  /** Path and query, already percent-encoded. */
  readonly path: string;
  /** Sign with X-Matrix (default true). */
  readonly signed?: boolean;
  /** Give up after this long, the whole body included (default: the adapter's own). */
  readonly timeoutMs?: number;
  /** Stop the body past this many bytes (`too_large`). */
  readonly maxResponseBytes: number;
}

/**
 * A streamed answer. Read `body` to its end or cancel it: that frees the connection. Reading it
 * fails with FederationUnreachable (`timeout`, `too_large`, `network`) when the exchange does.
 */
export interface FederationStreamResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array>;
}

/** Sends requests to other homeservers. */
export interface FederationTransport {
  /** Send `request`; throws FederationUnreachable when no usable response arrives. */
  request(request: FederationRequest): Promise<FederationResponse>;
  /**
   * Send `request` and stream the answer's body (remote media). Optional so that transports
   * which never carry media (test recorders) need not implement it; without it, remote media
   * is unreachable.
   */
  requestStream?(request: FederationStreamRequest): Promise<FederationStreamResponse>;
  /**
   * GET a URL a destination pointed to (a media `Location`): unsigned (the X-Matrix header is
   * for the destination alone), HTTPS only, every redirect hop's addresses checked as a
   * destination's are. Throws FederationUnreachable (`refused` for a private address).
   */
  followLocation?(
    url: string,
    options: { readonly timeoutMs?: number; readonly maxResponseBytes: number },
  ): Promise<FederationStreamResponse>;
}
