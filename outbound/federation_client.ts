/**
 * The FederationTransport adapter: requests to other homeservers over HTTPS, resolved as the
 * spec's "Resolving server names" says (domain/federation/server_discovery.ts), signed with
 * X-Matrix, sent to addresses the private-address guard allowed (outbound/guarded_fetch.ts),
 * with the TLS name and Host header discovery chose (outbound/federation_https.ts).
 * `.well-known/matrix/server` answers are cached in KV, since every isolate shares them.
 */
import { type Config, ConfigError } from "../domain/config.ts";
import type { ServerKeyring } from "../domain/protocol/server_keys.ts";
import type { SigningKey } from "../domain/protocol/signing.ts";
import type { JsonValue } from "../domain/protocol/json.ts";
import { SERVER_SOFTWARE } from "../domain/server_software.ts";
import {
  type FederationFailure,
  type FederationRequest,
  type FederationResponse,
  type FederationStreamRequest,
  type FederationStreamResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../domain/ports/federation_transport.ts";
import type { WellKnownCache } from "../domain/ports/well_known_cache.ts";
import { signRequest } from "../domain/federation/request_auth.ts";
import {
  delegatedServer,
  type DiscoveryLookups,
  InvalidServerName,
  resolveServerName,
  type SrvRecord,
  WELL_KNOWN_ERROR_MS,
  wellKnownAfterFailure,
  wellKnownLifetimeMs,
} from "../domain/federation/server_discovery.ts";
import { checkHostAddresses, resolveWithDns } from "./guarded_fetch.ts";
import {
  HttpsFailure,
  type HttpsRequest,
  httpsRequest,
  httpsRequestStream,
  type HttpsResponse,
  type HttpsTarget,
} from "./federation_https.ts";
import { fetchLocationStream, unreachableOnError } from "./location_fetch.ts";

/** The transport of a server with federation off (`TESSERA_FEDERATION=off`): refuses all. */
export class DisabledFederation implements FederationTransport {
  /** Always throws `FederationUnreachable("refused")`. */
  request(request: FederationRequest): Promise<FederationResponse> {
    return Promise.reject(
      new FederationUnreachable("refused", request.destination, "federation is disabled"),
    );
  }

  /** Always throws `FederationUnreachable("refused")`. */
  requestStream(request: FederationStreamRequest): Promise<FederationStreamResponse> {
    return Promise.reject(
      new FederationUnreachable("refused", request.destination, "federation is disabled"),
    );
  }

  /** Always throws `FederationUnreachable("refused")`. */
  followLocation(url: string): Promise<FederationStreamResponse> {
    return Promise.reject(new FederationUnreachable("refused", url, "federation is disabled"));
  }
}

/** Settings and seams of the client. */
export interface FederationClientOptions {
  /** Our server name: the X-Matrix origin. */
  readonly serverName: string;
  readonly signingKey: SigningKey;
  /** Let destinations be loopback or private (`TESSERA_FEDERATION_ALLOW_PRIVATE=true`). */
  readonly allowPrivate: boolean;
  /** CAs trusted beside the system roots (`TESSERA_FEDERATION_CA_FILE`). */
  readonly caCerts?: string[];
  readonly wellKnownCache: WellKnownCache;
  /** Clock for cache lifetimes. */
  readonly now?: () => number;
  /** Default deadline of a request (all attempts); 30 s. */
  readonly timeoutMs?: number;
  /** Largest response body; 64 MiB (a send_join answer for a big room is large). */
  readonly maxResponseBytes?: number;
  /** A host's addresses (A and AAAA); default DNS. */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** SRV records of a name; default DNS. */
  readonly resolveSrv?: (name: string) => Promise<SrvRecord[]>;
  /** The exchange itself; tests may wrap it. */
  readonly exchange?: typeof httpsRequest;
  /** The streamed exchange (remote media); tests may wrap it. */
  readonly exchangeStream?: typeof httpsRequestStream;
}

/** Well-known documents are small; Synapse stops at 50 KiB too. */
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const WELL_KNOWN_TIMEOUT_MS = 10_000;
const MAX_REDIRECTS = 5;
const encoder = new TextEncoder();

async function srvFromDns(name: string): Promise<SrvRecord[]> {
  try {
    return await Deno.resolveDns(name, "SRV");
  } catch {
    // NXDOMAIN, no records, or no answer: all mean "no SRV" to discovery.
    return [];
  }
}

function parseJson(body: Uint8Array): JsonValue | null {
  try {
    return JSON.parse(new TextDecoder().decode(body));
  } catch {
    return null;
  }
}

/** Sends signed federation requests over HTTPS. */
export class FederationClient implements FederationTransport {
  readonly #options: FederationClientOptions;
  readonly #now: () => number;
  readonly #exchange: typeof httpsRequest;
  readonly #exchangeStream: typeof httpsRequestStream;
  readonly #resolve: (host: string) => Promise<string[]>;
  readonly #lookups: DiscoveryLookups;

  /** Build a client; see FederationClientOptions for the defaults. */
  constructor(options: FederationClientOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#exchange = options.exchange ?? httpsRequest;
    this.#exchangeStream = options.exchangeStream ?? httpsRequestStream;
    this.#resolve = options.resolve ?? resolveWithDns;
    this.#lookups = {
      wellKnown: (hostname) => this.#wellKnown(hostname),
      srv: options.resolveSrv ?? srvFromDns,
    };
  }

  /** Resolve, sign, send; throws FederationUnreachable when no usable answer comes. */
  async request(request: FederationRequest): Promise<FederationResponse> {
    const prepared = await this.#prepare(request);
    const response = await this.#send(prepared.targets, prepared.deadline, prepared.fail, {
      method: request.method,
      path: request.path,
      headers: prepared.headers,
      body: prepared.body,
      maxResponseBytes: request.maxResponseBytes ?? this.#options.maxResponseBytes ??
        64 * 1024 * 1024,
    }, this.#exchange);
    return { status: response.status, body: parseJson(response.body) };
  }

  /**
   * Resolve, sign, send, and hand the answer's body over as a stream (remote media); errors
   * while it is read are FederationUnreachable too.
   */
  async requestStream(request: FederationStreamRequest): Promise<FederationStreamResponse> {
    const prepared = await this.#prepare(request);
    const response = await this.#send(prepared.targets, prepared.deadline, prepared.fail, {
      method: request.method,
      path: request.path,
      headers: prepared.headers,
      maxResponseBytes: request.maxResponseBytes,
    }, this.#exchangeStream);
    return {
      status: response.status,
      headers: response.headers,
      body: unreachableOnError(response.body, request.destination),
    };
  }

  /**
   * GET a URL a destination pointed us to (a media `Location`): unsigned, HTTPS only, every
   * redirect hop's addresses checked as a destination's are.
   */
  followLocation(
    url: string,
    options: { timeoutMs?: number; maxResponseBytes: number },
  ): Promise<FederationStreamResponse> {
    return fetchLocationStream(url, {
      allowPrivate: this.#options.allowPrivate,
      caCerts: this.#options.caCerts,
      resolve: this.#resolve,
      exchange: this.#exchangeStream,
      timeoutMs: options.timeoutMs ?? this.#options.timeoutMs ?? 30_000,
      maxResponseBytes: options.maxResponseBytes,
    });
  }

  /** The targets of the destination, the deadline, and the request's headers (signed). */
  async #prepare(request: FederationRequest | FederationStreamRequest) {
    const { destination } = request;
    const deadline = Date.now() + (request.timeoutMs ?? this.#options.timeoutMs ?? 30_000);
    const fail = (failure: FederationFailure, message: string) =>
      new FederationUnreachable(failure, destination, message);
    let targets;
    try {
      targets = await resolveServerName(destination, this.#lookups);
    } catch (e) {
      if (e instanceof InvalidServerName) throw fail("refused", e.message);
      throw e;
    }
    const headers: Record<string, string> = {
      "User-Agent": `${SERVER_SOFTWARE.name}/${SERVER_SOFTWARE.version}`,
    };
    const content = "body" in request ? request.body : undefined;
    const body = content === undefined ? undefined : encoder.encode(JSON.stringify(content));
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (request.signed !== false) {
      headers.Authorization = await signRequest({
        method: request.method,
        uri: request.path,
        origin: this.#options.serverName,
        destination,
        ...(content !== undefined ? { content } : {}),
      }, this.#options.signingKey);
    }
    return { targets, deadline, fail, headers, body };
  }

  /**
   * Try each target in turn, and each of its allowed addresses, until one answers. A refused
   * or unresolvable target, or a connection or TLS failure, moves on to the next; a timeout or
   * an oversize answer ends the request.
   */
  async #send<T>(
    targets: readonly { connectHost: string; port: number; tlsName: string; hostHeader: string }[],
    deadline: number,
    fail: (failure: FederationFailure, message: string) => FederationUnreachable,
    request: {
      method: string;
      path: string;
      headers: Record<string, string>;
      body?: Uint8Array;
      maxResponseBytes: number;
    },
    exchange: (target: HttpsTarget, request: HttpsRequest) => Promise<T>,
  ): Promise<T> {
    let last = fail("unresolved", "no target to try");
    for (const target of targets) {
      const check = await checkHostAddresses(target.connectHost, {
        allowPrivate: this.#options.allowPrivate,
        resolve: this.#resolve,
      });
      if (!check.ok) {
        last = fail(check.failure, check.reason);
        continue;
      }
      for (const address of check.addresses) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw fail("timeout", "deadline passed");
        const to: HttpsTarget = {
          address,
          port: target.port,
          tlsName: target.tlsName,
          hostHeader: target.hostHeader,
        };
        try {
          return await exchange(to, {
            ...request,
            caCerts: this.#options.caCerts,
            timeoutMs: remaining,
          });
        } catch (e) {
          if (!(e instanceof HttpsFailure)) throw e;
          const where = `${address}:${target.port} (${target.tlsName})`;
          if (e.kind === "timeout" || e.kind === "too_large") {
            throw fail(e.kind, `${where}: ${e.message}`);
          }
          last = fail(e.kind, `${where}: ${e.message}`);
        }
      }
    }
    throw last;
  }

  /** The well-known document of `hostname`, from the KV cache or fetched (and cached). */
  async #wellKnown(hostname: string): Promise<JsonValue | undefined> {
    const cache = this.#options.wellKnownCache;
    const now = this.#now();
    const cached = await cache.get(hostname);
    if (cached !== undefined && cached.expiresAt > now) return cached.document ?? undefined;
    let document: JsonValue | null = null;
    let lifetime = WELL_KNOWN_ERROR_MS;
    // No answer or a 5xx may pass; a 4xx or an invalid document is the server's answer.
    let temporary = false;
    try {
      const response = await this.#fetchWellKnown(hostname);
      const parsed = response.status === 200 ? parseJson(response.body) : null;
      if (delegatedServer(parsed ?? undefined) !== undefined) {
        document = parsed;
        lifetime = wellKnownLifetimeMs({
          cacheControl: response.headers.get("cache-control"),
          expires: response.headers.get("expires"),
        }, now);
      } else {
        temporary = response.status >= 500;
      }
    } catch (e) {
      if (!(e instanceof HttpsFailure || e instanceof FederationUnreachable)) throw e;
      temporary = true;
    }
    let validUntil = document === null ? undefined : now + lifetime;
    if (document === null) {
      // Spec: errors cached about an hour; a blip soon after a valid answer, 2 minutes.
      ({ document, lifetimeMs: lifetime } = wellKnownAfterFailure(cached, temporary, now));
      if (document !== null) validUntil = cached?.validUntil;
    }
    try {
      await cache.put(hostname, {
        document,
        expiresAt: now + lifetime,
        ...(validUntil !== undefined ? { validUntil } : {}),
      });
    } catch (error) {
      console.warn("federation: well-known not cached", hostname, error);
    }
    return document ?? undefined;
  }

  /** GET https://<hostname>/.well-known/matrix/server, following up to 5 HTTPS redirects. */
  async #fetchWellKnown(hostname: string): Promise<HttpsResponse> {
    let url = new URL(`https://${hostname}/.well-known/matrix/server`);
    const seen = new Set<string>();
    const deadline = Date.now() + WELL_KNOWN_TIMEOUT_MS;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      if (url.protocol !== "https:" || seen.has(url.href)) break;
      seen.add(url.href);
      const host = url.hostname.replace(/^\[|\]$/g, "");
      const port = url.port === "" ? 443 : Number(url.port);
      const response = await this.#send(
        [{ connectHost: host, port, tlsName: host, hostHeader: url.host }],
        deadline,
        (failure, message) => new FederationUnreachable(failure, hostname, message),
        {
          method: "GET",
          path: url.pathname + url.search,
          headers: { "User-Agent": `${SERVER_SOFTWARE.name}/${SERVER_SOFTWARE.version}` },
          maxResponseBytes: WELL_KNOWN_MAX_BYTES,
        },
        this.#exchange,
      );
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location !== null) {
        try {
          url = new URL(location, url);
        } catch {
          return response;
        }
        continue;
      }
      return response;
    }
    throw new FederationUnreachable(
      "refused",
      hostname,
      "well-known redirects loop or leave HTTPS",
    );
  }
}

/** The transport main.ts wires from the configuration. */
export function federationClientFromConfig(
  config: Config,
  keyring: ServerKeyring,
  wellKnownCache: WellKnownCache,
): FederationTransport {
  if (!config.federation.enabled) return new DisabledFederation();
  let caCerts: string[] | undefined;
  if (config.federation.caFile !== undefined) {
    try {
      caCerts = [Deno.readTextFileSync(config.federation.caFile)];
    } catch (e) {
      throw new ConfigError(
        "TESSERA_FEDERATION_CA_FILE",
        `cannot read ${JSON.stringify(config.federation.caFile)}: ${
          e instanceof Error ? e.message : e
        }`,
      );
    }
  }
  return new FederationClient({
    serverName: config.serverName,
    signingKey: keyring.current,
    allowPrivate: config.federation.allowPrivate,
    caCerts,
    wellKnownCache,
  });
}
