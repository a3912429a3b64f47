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
  type FederationTransport,
  FederationUnreachable,
} from "../../domain/ports/federation_transport.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";

/** One server of the network: the test server helper plus a few shortcuts. */
export type NetworkServer = Awaited<ReturnType<typeof startTestServer>> & {
  /** Its server name, as in its user and room IDs. */
  readonly name: string;
  /** Register `localpart` (no password, m.login.dummy) and return its session. */
  register(localpart: string): Promise<RegisteredUser>;
};

/** What a test may see of, and do to, one federation request in flight. */
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

  async function deliver(origin: string, request: FederationRequest): Promise<FederationResponse> {
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
    const sender = servers[origin];
    const headers: Record<string, string> = {};
    if (request.body !== undefined) headers["content-type"] = "application/json";
    if (request.signed !== false) {
      headers.authorization = await signRequest({
        method: request.method,
        uri: request.path,
        origin,
        destination: request.destination,
        ...(request.body !== undefined ? { content: request.body } : {}),
      }, sender.deps.keyring.current);
    }
    const response = await target.app.request(request.path, {
      method: request.method,
      headers,
      ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
    });
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

  const transports = new Map<string, FederationTransport>();
  for (const name of names) {
    transports.set(name, { request: (request) => deliver(name, request) });
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
