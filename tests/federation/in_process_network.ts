/**
 * Several in-process Tessera servers, each the real assembly over its own `:memory:` KV, joined
 * by an in-memory FederationTransport: a request to a server name goes straight to that
 * server's Hono app, signed with the origin's real key by the real X-Matrix code, so request
 * authentication runs exactly as over HTTPS. No sockets, no TLS, no DNS.
 *
 * ```ts
 * const net = await startNetwork(["a.test", "b.test"]);
 * try {
 *   const alice = await net.servers["a.test"].register("alice");
 *   ...
 * } finally {
 *   await net.close();
 * }
 * ```
 */
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { signRequest } from "../../domain/federation/request_auth.ts";
import {
  type FederationRequest,
  type FederationResponse,
  type FederationStreamRequest,
  type FederationStreamResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../../domain/ports/federation_transport.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";
import { fetchLocationStream } from "../../outbound/location_fetch.ts";
import { httpsRequestStream } from "../../outbound/federation_https.ts";

/** One server of the network: the test server helper plus a few shortcuts. */
export type NetworkServer = Awaited<ReturnType<typeof startTestServer>> & {
  /** Its server name, as in its user and room IDs. */
  readonly name: string;
  /** Register `localpart` (no password, m.login.dummy) and return its session. */
  register(localpart: string): Promise<RegisteredUser>;
};

/**
 * What a test may see of, and do to, one federation request in flight (a streamed one, for
 * media, is a GET without a body).
 */
export interface NetworkRequest extends FederationRequest {
  /** The server sending it. */
  readonly origin: string;
}

/**
 * Decides the fate of a request before it is delivered: `"deliver"` (the default), `"drop"`
 * (the sender sees FederationUnreachable `network`, as for a lost connection) or a response to
 * return instead of delivering it.
 */
export type NetworkInterceptor = (
  request: NetworkRequest,
) => "deliver" | "drop" | FederationResponse | Promise<"deliver" | "drop" | FederationResponse>;

/** Options for `startNetwork`. */
export interface NetworkOptions {
  /** Environment for every server (TESSERA_SERVER_NAME is set per server). */
  env?: Record<string, string>;
  /** Per-server environment, merged over `env`. */
  envFor?: Record<string, Record<string, string>>;
  /** Clock for every server. */
  now?: () => number;
  /**
   * CAs trusted when a server follows a media `Location` (those go over real HTTPS, through
   * the real address guard, whose TESSERA_FEDERATION_ALLOW_PRIVATE each server's env sets).
   */
  locationCaCerts?: string[];
}

/** A running network of in-process servers. */
export interface Network {
  /** The servers by name. */
  readonly servers: Record<string, NetworkServer>;
  /** Every request delivered or refused so far, in order (for assertions on traffic). */
  readonly log: NetworkRequest[];
  /** Make `name` unreachable (`down`) or reachable again: requests to it fail as `network`. */
  setReachable(name: string, reachable: boolean): void;
  /** Run `interceptor` on every request from now on; `undefined` removes it. */
  intercept(interceptor: NetworkInterceptor | undefined): void;
  /** The transport `origin` sends with (the one wired into its AppDeps). */
  transportFor(origin: string): FederationTransport;
  /** Close every server's KV. */
  close(): Promise<void>;
}

/** Start one in-process server per name, all connected to each other. */
export async function startNetwork(
  names: readonly string[],
  options: NetworkOptions = {},
): Promise<Network> {
  const servers: Record<string, NetworkServer> = {};
  const down = new Set<string>();
  const log: NetworkRequest[] = [];
  let interceptor: NetworkInterceptor | undefined;

  /**
   * The fate of a request from `origin`: logged, refused as the real client would, then the
   * interceptor's verdict (throws for a dropped one).
   */
  async function admit(
    origin: string,
    request: FederationRequest,
  ): Promise<"deliver" | FederationResponse> {
    const seen: NetworkRequest = { ...request, origin };
    log.push(seen);
    if (!servers[origin].config.federation.enabled) {
      // As the real client with TESSERA_FEDERATION=off.
      throw new FederationUnreachable("refused", request.destination, "federation is disabled");
    }
    const target = servers[request.destination];
    if (target === undefined) {
      throw new FederationUnreachable("unresolved", request.destination, "no such test server");
    }
    if (down.has(request.destination)) {
      throw new FederationUnreachable("network", request.destination, "server is down");
    }
    const verdict = interceptor === undefined ? "deliver" : await interceptor(seen);
    if (verdict === "drop") {
      throw new FederationUnreachable("network", request.destination, "dropped by the test");
    }
    return verdict;
  }

  /** Deliver to the destination's app, signed with the origin's key as the real client signs. */
  async function send(origin: string, request: FederationRequest): Promise<Response> {
    const body = request.body;
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (request.signed !== false) {
      headers.authorization = await signRequest({
        method: request.method,
        uri: request.path,
        origin,
        destination: request.destination,
        ...(body !== undefined ? { content: body } : {}),
      }, servers[origin].deps.keyring.current);
    }
    return await servers[request.destination].app.request(request.path, {
      method: request.method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  }

  async function deliver(origin: string, request: FederationRequest): Promise<FederationResponse> {
    const verdict = await admit(origin, request);
    // As the real client: an answer over the request's size limit is `too_large`.
    const checkSize = (text: string) => {
      if (
        request.maxResponseBytes !== undefined &&
        new TextEncoder().encode(text).byteLength > request.maxResponseBytes
      ) {
        throw new FederationUnreachable("too_large", request.destination, "response too large");
      }
    };
    if (verdict !== "deliver") {
      checkSize(JSON.stringify(verdict.body));
      return verdict;
    }
    const response = await send(origin, request);
    const text = await response.text();
    checkSize(text);
    let body: JsonValue | null = null;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      body = null;
    }
    return { status: response.status, body };
  }

  /** A streamed request (media): the body comes through as the app writes it, size-bounded. */
  async function deliverStream(
    origin: string,
    request: FederationStreamRequest,
  ): Promise<FederationStreamResponse> {
    const verdict = await admit(origin, request);
    const response = verdict === "deliver"
      ? await send(origin, request)
      : Response.json(verdict.body, { status: verdict.status });
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > request.maxResponseBytes) {
      await response.body?.cancel();
      throw new FederationUnreachable("too_large", request.destination, "response too large");
    }
    const reader = (response.body ?? new Response("").body!).getReader();
    let size = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) return controller.close();
        size += value.byteLength;
        if (size > request.maxResponseBytes) {
          await reader.cancel();
          controller.error(
            new FederationUnreachable("too_large", request.destination, "response too large"),
          );
          return;
        }
        controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
    return { status: response.status, headers: response.headers, body };
  }

  const transports = new Map<string, FederationTransport>();
  for (const name of names) {
    transports.set(name, {
      request: (request) => deliver(name, request),
      requestStream: (request) => deliverStream(name, request),
      followLocation: (url, limits) =>
        fetchLocationStream(url, {
          allowPrivate: servers[name].config.federation.allowPrivate,
          ...(options.locationCaCerts ? { caCerts: options.locationCaCerts } : {}),
          exchange: httpsRequestStream,
          timeoutMs: limits.timeoutMs ?? 30_000,
          maxResponseBytes: limits.maxResponseBytes,
        }),
    });
  }

  try {
    for (const name of names) {
      const env = {
        TESSERA_REGISTRATION: "open",
        TESSERA_RATE_LIMITS: "off",
        ...options.env,
        ...options.envFor?.[name],
        TESSERA_SERVER_NAME: name,
      };
      const server = await startTestServer(env, {
        federationTransport: transports.get(name)!,
        ...FAST_HASHING,
        ...(options.now ? { now: options.now } : {}),
      });
      servers[name] = Object.assign(server, {
        name,
        register: (localpart: string) => registerUser(server, localpart),
      });
    }
  } catch (e) {
    for (const server of Object.values(servers)) server.close();
    throw e;
  }

  return {
    servers,
    log,
    setReachable(name, reachable) {
      if (reachable) down.delete(name);
      else down.add(name);
    },
    intercept(next) {
      interceptor = next;
    },
    transportFor(origin) {
      const transport = transports.get(origin);
      if (transport === undefined) throw new Error(`no test server ${origin}`);
      return transport;
    },
    close() {
      for (const server of Object.values(servers)) server.close();
      return Promise.resolve();
    },
  };
}
