/**
 * Following a URL another homeserver gave us (the `Location` of a federation media answer, or a
 * redirect of one): a plain HTTPS GET without our X-Matrix signature, to addresses checked by
 * the private-address guard on every hop (so a remote server cannot point us inwards, directly
 * or through a redirect), over the federation HTTPS stack (outbound/federation_https.ts), which
 * connects to exactly the addresses checked.
 */
import {
  type FederationStreamResponse,
  FederationUnreachable,
} from "../domain/ports/federation_transport.ts";
import { SERVER_SOFTWARE } from "../domain/server_software.ts";
import { checkHostAddresses } from "./guarded_fetch.ts";
import { HttpsFailure, type httpsRequestStream } from "./federation_https.ts";

/** Redirect hops followed after the first URL, as Synapse's and browsers' usual bound. */
export const MAX_LOCATION_REDIRECTS = 5;

/** What a location fetch needs. */
export interface LocationFetchOptions {
  /** Let hosts resolve to private or loopback addresses (TESSERA_FEDERATION_ALLOW_PRIVATE). */
  readonly allowPrivate: boolean;
  readonly caCerts?: readonly string[];
  readonly resolve?: (host: string) => Promise<string[]>;
  readonly exchange: typeof httpsRequestStream;
  /** The whole fetch, every hop and the body included. */
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
}

/**
 * A stream whose errors are FederationUnreachable (an HttpsFailure becomes the same kind), so
 * readers of a federation body see one error type.
 */
export function unreachableOnError(
  body: ReadableStream<Uint8Array>,
  where: string,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        controller.error(
          e instanceof HttpsFailure
            ? new FederationUnreachable(e.kind, where, e.message)
            : e instanceof FederationUnreachable
            ? e
            : new FederationUnreachable("network", where, String(e)),
        );
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** GET `url`, following up to MAX_LOCATION_REDIRECTS redirects, each hop guarded. */
export async function fetchLocationStream(
  url: string,
  options: LocationFetchOptions,
): Promise<FederationStreamResponse> {
  const deadline = Date.now() + options.timeoutMs;
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw new FederationUnreachable("refused", url, "not a URL");
  }
  const seen = new Set<string>();
  for (let hop = 0; hop <= MAX_LOCATION_REDIRECTS; hop++) {
    const where = current.host;
    if (current.protocol !== "https:") {
      throw new FederationUnreachable("refused", where, `scheme ${current.protocol} refused`);
    }
    if (seen.has(current.href)) throw new FederationUnreachable("refused", where, "redirect loop");
    seen.add(current.href);
    const host = current.hostname.replace(/^\[|\]$/g, "");
    const check = await checkHostAddresses(host, {
      allowPrivate: options.allowPrivate,
      resolve: options.resolve,
    });
    if (!check.ok) throw new FederationUnreachable(check.failure, where, check.reason);
    const port = current.port === "" ? 443 : Number(current.port);
    let response;
    let last: FederationUnreachable | undefined;
    for (const address of check.addresses) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new FederationUnreachable("timeout", where, "deadline passed");
      try {
        response = await options.exchange(
          { address, port, tlsName: host, hostHeader: current.host },
          {
            method: "GET",
            path: current.pathname + current.search,
            headers: { "User-Agent": `${SERVER_SOFTWARE.name}/${SERVER_SOFTWARE.version}` },
            ...(options.caCerts?.length ? { caCerts: [...options.caCerts] } : {}),
            timeoutMs: remaining,
            maxResponseBytes: options.maxResponseBytes,
          },
        );
        break;
      } catch (e) {
        if (!(e instanceof HttpsFailure)) throw e;
        last = new FederationUnreachable(e.kind, where, e.message);
        if (e.kind === "timeout" || e.kind === "too_large") throw last;
      }
    }
    if (response === undefined) {
      throw last ?? new FederationUnreachable("unresolved", where, "no address to try");
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body.cancel();
      try {
        current = new URL(location, current);
      } catch {
        throw new FederationUnreachable("refused", where, "redirect to a malformed URL");
      }
      continue;
    }
    return {
      status: response.status,
      headers: response.headers,
      body: unreachableOnError(response.body, where),
    };
  }
  throw new FederationUnreachable("refused", current.host, "too many redirects");
}
