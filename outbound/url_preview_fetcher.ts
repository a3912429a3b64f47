/**
 * Fetches pages and images for URL previews: the one place a user can make the server request
 * any URL, so every hop is checked. Redirects are followed by hand (at most 5), and before each
 * request the host is resolved and every address it resolves to must be public (unless
 * `TESSERA_URL_PREVIEW_ALLOW_PRIVATE`), with checkHostAddresses from guarded_fetch.ts; only
 * http and https are fetched. The whole chain, DNS to last body byte, has one deadline (10 s)
 * and the body one size bound (10 MiB, counted after fetch undoes any content encoding, so a
 * compressed bomb stops at the bound too).
 *
 * Limit: as with guarded_fetch.ts, fetch resolves the host again after the check, so a DNS
 * answer that changes between the two (rebinding with a zero TTL) can slip through.
 */
import { OutboundError } from "../domain/ports/outbound_http.ts";
import type { FetchedResource, UrlPreviewFetcher } from "../domain/ports/url_preview_fetcher.ts";
import { checkHostAddresses, resolveWithDns } from "./guarded_fetch.ts";

/** Settings; the defaults are Synapse's (max_spider_size 10M) and the design's. */
export interface UrlPreviewFetcherOptions {
  /** Let requests reach private and local addresses (TESSERA_URL_PREVIEW_ALLOW_PRIVATE). */
  readonly allowPrivate: boolean;
  /** Largest body accepted; default 10 MiB. */
  readonly maxBytes?: number;
  /** The whole exchange, every hop included; default 10 s. */
  readonly timeoutMs?: number;
  /** Redirects followed before giving up; default 5. */
  readonly maxRedirects?: number;
  /** Resolves a host name to its addresses; default Deno.resolveDns (A and AAAA). */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** The fetch to send with; tests may pass their own. */
  readonly fetch?: typeof fetch;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// Sites serve a bare page or a consent wall to unknown agents; Synapse names itself too.
const HEADERS = {
  "User-Agent": "Tessera (bot; +https://github.com/matrix-org/matrix-spec) URL preview",
  "Accept": "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5",
  "Accept-Language": "en;q=0.9, *;q=0.5",
};

/** The UrlPreviewFetcher over fetch, with the address guard on every hop. */
export class GuardedPreviewFetcher implements UrlPreviewFetcher {
  readonly #allowPrivate: boolean;
  readonly #maxBytes: number;
  readonly #timeoutMs: number;
  readonly #maxRedirects: number;
  readonly #resolve: (host: string) => Promise<string[]>;
  readonly #fetch: typeof fetch;

  /** Build a fetcher; see UrlPreviewFetcherOptions for the defaults. */
  constructor(options: UrlPreviewFetcherOptions) {
    this.#allowPrivate = options.allowPrivate;
    this.#maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxRedirects = options.maxRedirects ?? 5;
    this.#resolve = options.resolve ?? resolveWithDns;
    this.#fetch = options.fetch ?? fetch;
  }

  /** GET `url`, following redirects, each hop's addresses checked before it is requested. */
  async get(url: string): Promise<FetchedResource> {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new OutboundError("timeout", `no answer within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    // A DNS lookup cannot be aborted, so the race ends the wait; fetch and body reads see the
    // abort signal and stop too.
    const work = this.#follow(url, controller.signal);
    work.catch(() => {}); // the deadline may win; the loser's rejection is expected
    try {
      return await Promise.race([work, deadline]);
    } catch (e) {
      if (e instanceof OutboundError) throw e;
      if (controller.signal.aborted) {
        throw new OutboundError("timeout", `no answer within ${this.#timeoutMs} ms`);
      }
      throw new OutboundError("network", e instanceof Error ? e.message : String(e));
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  }

  async #follow(url: string, signal: AbortSignal): Promise<FetchedResource> {
    let current = parseUrl(url);
    for (let hop = 0;; hop++) {
      await this.#check(current);
      const response = await this.#fetch(current, {
        method: "GET",
        headers: HEADERS,
        redirect: "manual",
        signal,
      });
      const location = response.headers.get("location");
      if (REDIRECTS.has(response.status) && location !== null) {
        await response.body?.cancel();
        if (hop >= this.#maxRedirects) {
          throw new OutboundError("refused", `more than ${this.#maxRedirects} redirects`);
        }
        current = parseUrl(location, current);
        continue;
      }
      const body = await this.#readBody(response);
      return {
        url: current.href,
        status: response.status,
        contentType: response.headers.get("content-type"),
        body,
      };
    }
  }

  /** Refuse a URL that is not http(s), or whose host reaches a refused address. */
  async #check(url: URL): Promise<void> {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new OutboundError("refused", `scheme ${url.protocol} is not allowed`);
    }
    if (url.username !== "" || url.password !== "") {
      // Credentials in a preview URL would be sent on the user's behalf to whoever runs the host.
      throw new OutboundError("refused", "URLs with credentials are not fetched");
    }
    const check = await checkHostAddresses(url.hostname, {
      allowPrivate: this.#allowPrivate,
      resolve: this.#resolve,
    });
    if (!check.ok) throw new OutboundError(check.failure, check.reason);
  }

  async #readBody(response: Response): Promise<Uint8Array> {
    const limit = this.#maxBytes;
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await response.body?.cancel();
      throw new OutboundError("too_large", `body of ${declared} bytes`);
    }
    if (response.body === null) return new Uint8Array(0);
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = response.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel();
        throw new OutboundError("too_large", `body over ${limit} bytes`);
      }
      chunks.push(value);
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    return all;
  }
}

function parseUrl(text: string, base?: URL): URL {
  try {
    return new URL(text, base);
  } catch {
    throw new OutboundError("refused", "not a URL");
  }
}
