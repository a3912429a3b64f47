/**
 * An in-process server for route tests: the real assembly (`assembleServer`) over `:memory:` KV,
 * with a small JSON request helper. Tests call `close()` when done.
 */
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";

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

  async function request(
    method: string,
    path: string,
    { body, token, headers = {} }: RequestOptions = {},
  ): Promise<JsonResponse> {
    const init: RequestInit = { method, headers: { ...headers } };
    if (token) (init.headers as Record<string, string>).authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)["content-type"] = "application/json";
    }
    const res = await server.app.request(path, init);
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

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
