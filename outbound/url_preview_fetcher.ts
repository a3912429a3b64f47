/**
 * Fetches pages and images for URL previews: the one place a user can make the server request
 * any URL, so every hop is checked. Redirects are followed by hand (at most 5), and before each
 * request the host is resolved and every address it resolves to must be public (unless
 * `TESSERA_URL_PREVIEW_ALLOW_PRIVATE`), with checkHostAddresses from guarded_fetch.ts; only
 * http and https are fetched. The whole chain, DNS to last body byte, has one deadline (10 s)
 * and the body one size bound (10 MiB, counted after fetch undoes any content encoding, so a
 * compressed bomb stops at the bound too).
 *
 * DNS rebinding (a name that answers a public address to the check and a private one to the
 * connection): a plain-http hop connects to exactly the address checked, with the Host header
 * naming the host (a Deno.HttpClient with `allowHost`). An https hop lets fetch resolve again,
 * but there the certificate must be valid for the name, which an internal service rebound to
 * does not hold, so the handshake fails rather than reaching it.
 */
import { type Config, ConfigError } from "../domain/config.ts";
import { OutboundError } from "../domain/ports/outbound_http.ts";
import { SERVER_SOFTWARE } from "../domain/server_software.ts";
import type { FetchedResource, UrlPreviewFetcher } from "../domain/ports/url_preview_fetcher.ts";
import { checkHostAddresses, resolveWithDns } from "./guarded_fetch.ts";
import { readStreamUpTo } from "../domain/bytes.ts";

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
  /** CAs trusted beside the system roots (PEM), for test harnesses with their own CA. */
  readonly caCerts?: readonly string[];
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// Sites serve a bare page or a consent wall to unknown agents; Synapse names itself too.
const HEADERS = {
  "User-Agent": `${SERVER_SOFTWARE.name}/${SERVER_SOFTWARE.version} (URL preview bot)`,
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
  readonly #caCerts: string[];

  /** Build a fetcher; see UrlPreviewFetcherOptions for the defaults. */
  constructor(options: UrlPreviewFetcherOptions) {
    this.#allowPrivate = options.allowPrivate;
    this.#maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxRedirects = options.maxRedirects ?? 5;
    this.#resolve = options.resolve ?? resolveWithDns;
    this.#fetch = options.fetch ?? fetch;
    this.#caCerts = [...options.caCerts ?? []];
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
    // One client per preview, closed with it (previews are few, and cached): it lets a request
    // name the host in its Host header while connecting to a checked address.
    const client = pinningClient(this.#caCerts);
    const work = this.#follow(url, client, controller.signal);
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
      client?.close();
    }
  }

  async #follow(
    url: string,
    client: Deno.HttpClient | undefined,
    signal: AbortSignal,
  ): Promise<FetchedResource> {
    let current = parseUrl(url);
    for (let hop = 0;; hop++) {
      const addresses = await this.#check(current);
      const response = await this.#send(current, addresses, client, signal);
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

  /**
   * Send one hop: plain http to the checked addresses in turn (the next one when a connection
   * fails), https by name (see the module comment).
   */
  async #send(
    url: URL,
    addresses: string[],
    client: Deno.HttpClient | undefined,
    signal: AbortSignal,
  ): Promise<Response> {
    const init = {
      method: "GET",
      redirect: "manual",
      signal,
      ...(client ? { client } : {}),
    } as const;
    if (url.protocol === "https:" || client === undefined) {
      return await this.#fetch(url, { ...init, headers: HEADERS });
    }
    let failure: unknown;
    for (const address of addresses) {
      const pinned = new URL(url);
      pinned.hostname = address.includes(":") ? `[${address}]` : address;
      try {
        return await this.#fetch(pinned, { ...init, headers: { ...HEADERS, host: url.host } });
      } catch (e) {
        if (signal.aborted) throw e;
        failure = e;
      }
    }
    throw failure ?? new OutboundError("unresolved", `${url.hostname} has no address`);
  }

  /**
   * Refuse a URL that is not http(s), or whose host reaches a refused address; the addresses
   * it may be reached at otherwise.
   */
  async #check(url: URL): Promise<string[]> {
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
    return check.addresses;
  }

  async #readBody(response: Response): Promise<Uint8Array> {
    const limit = this.#maxBytes;
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await response.body?.cancel();
      throw new OutboundError("too_large", `body of ${declared} bytes`);
    }
    if (response.body === null) return new Uint8Array(0);
    const all = await readStreamUpTo(response.body, limit);
    if (all === null) throw new OutboundError("too_large", `body over ${limit} bytes`);
    return all;
  }
}

/**
 * A client that may set the Host header, or undefined where the runtime has none (then plain
 * http goes by name, and the rebinding gap of guarded_fetch.ts applies to it too).
 */
function pinningClient(caCerts: string[]): Deno.HttpClient | undefined {
  try {
    return typeof Deno.createHttpClient === "function"
      ? Deno.createHttpClient({ allowHost: true, ...(caCerts.length > 0 ? { caCerts } : {}) })
      : undefined;
  } catch {
    return undefined;
  }
}

function parseUrl(text: string, base?: URL): URL {
  try {
    return new URL(text, base);
  } catch {
    throw new OutboundError("refused", "not a URL");
  }
}

/**
 * The fetcher main.ts wires: TESSERA_URL_PREVIEW_ALLOW_PRIVATE, and the CAs of
 * TESSERA_FEDERATION_CA_FILE trusted beside the system roots (a test harness such as SyTest
 * serves its pages over HTTPS signed by the same CA it gives federation).
 */
export function previewFetcherFromConfig(config: Config): GuardedPreviewFetcher {
  const caFile = config.federation.caFile;
  let caCerts: string[] = [];
  if (caFile !== undefined) {
    try {
      caCerts = [Deno.readTextFileSync(caFile)];
    } catch (e) {
      throw new ConfigError(
        "TESSERA_FEDERATION_CA_FILE",
        `cannot read ${JSON.stringify(caFile)}: ${e instanceof Error ? e.message : e}`,
      );
    }
  }
  return new GuardedPreviewFetcher({ allowPrivate: config.media.urlPreviewAllowPrivate, caCerts });
}
