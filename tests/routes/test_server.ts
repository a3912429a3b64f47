/**
 * An in-process server for route tests: the real assembly (`assembleServer`) over `:memory:` KV,
 * with a small JSON request helper. Tests call `close()` when done.
 */
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";
import { jsonRequest } from "../json_request.ts";

/** A JSON response: status, parsed body (or null) and headers. */
export interface JsonResponse {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  headers: Headers;
}

/** Options for one request. */
export interface RequestOptions {
  /** Sent as JSON unless it is a string (sent as is, for malformed-body tests). */
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
}

/**
 * Start an in-process server; `env` overrides configuration variables. With `sharedKv`, the
 * server runs over that database (several servers on one KV: isolates of one deployment) and
 * `close()` leaves it open for its owner to close.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: Parameters<typeof assembleServer>[2] = {},
  sharedKv?: Deno.Kv,
) {
  const config = loadConfig({ TESSERA_SERVER_NAME: "example.org:8448", ...env }, { dev: true });
  const kv = sharedKv ?? await Deno.openKv(":memory:");
  const server = await assembleServer(config, kv, options);

  const request = (method: string, path: string, options?: RequestOptions) =>
    jsonRequest((p, init) => server.app.request(p, init), method, path, options);

  return {
    ...server,
    kv,
    config,
    request,
    close: () => {
      // Its poll timer or watches first: they read the KV being closed.
      server.wakeSource.close();
      // And the rate limiter's flush timer (hits not yet written are dropped).
      server.deps.rateLimiter.close();
      if (sharedKv === undefined) kv.close();
    },
  };
}
