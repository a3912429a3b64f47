/**
 * The port for outbound HTTP requests to servers users name (push gateways, identity servers).
 * The adapter (outbound/guarded_fetch.ts) refuses private addresses, bounds time and size.
 */

/** One request: the body, when given, is sent as is (callers encode JSON themselves). */
export interface OutboundRequest {
  readonly method: "GET" | "POST" | "PUT" | "DELETE";
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

/** A whole response, read into memory within the adapter's size limit. */
export interface OutboundResponse {
  readonly status: number;
  readonly headers: Headers;
  /** The body decoded as UTF-8. */
  readonly text: string;
}

/**
 * Why a request failed without a response:
 * - `refused`: the URL or its address is not allowed (a private address, a bad scheme);
 *   retrying will not help;
 * - `unresolved`: the host name did not resolve;
 * - `timeout`, `too_large`, `network`: the attempt failed and a later one may succeed.
 */
export type OutboundFailure = "refused" | "unresolved" | "timeout" | "too_large" | "network";

/** A request that got no usable response; `failure` says whether retrying makes sense. */
export class OutboundError extends Error {
  /** Build from the failure kind and a message for logs (never shown to other users). */
  constructor(readonly failure: OutboundFailure, message: string) {
    super(message);
    this.name = "OutboundError";
  }
}

/** Sends requests to other servers on the Internet. */
export interface OutboundHttp {
  /** Send `request` to `url`; throws OutboundError when no usable response arrives. */
  request(url: string, request: OutboundRequest): Promise<OutboundResponse>;
}
