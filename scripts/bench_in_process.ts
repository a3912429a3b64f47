/**
 * An in-process server for benchmarks: the real assembly over a durable KV file in a temp
 * directory (or `:memory:`, to separate CPU cost from each commit's disk sync), driven through
 * `app.request`, so figures carry no socket or HTTP parsing noise.
 */
import { assembleServer } from "../main.ts";
import { loadConfig } from "../domain/config.ts";

/** A running in-process server. */
export interface InProcessServer {
  /**
   * One request; a string body is sent as is, anything else as JSON. Throws on a non-200 so a
   * benchmark never times failures. Returns the parsed JSON body.
   */
  // deno-lint-ignore no-explicit-any
  call(method: string, path: string, token?: string, body?: unknown): Promise<any>;
  /** Close KV and remove the temp directory. */
  close(): Promise<void>;
}

/** Start one over a fresh KV; `prefix` names the temp directory. */
export async function startInProcessServer(
  prefix: string,
  memory: boolean,
): Promise<InProcessServer> {
  const dir = await Deno.makeTempDir({ prefix });
  const kv = await Deno.openKv(memory ? ":memory:" : `${dir}/bench.kv`);
  const config = loadConfig({
    TESSERA_SERVER_NAME: "bench.example",
    TESSERA_RATE_LIMITS: "off",
  }, { dev: true });
  const { app } = await assembleServer(config, kv, { passwordHashing: { logN: 10, r: 8, p: 1 } });
  return {
    async call(method, path, token, body) {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await app.request(path, {
        method,
        headers,
        body: body === undefined || typeof body === "string" ? body : JSON.stringify(body),
      });
      const json = await res.json();
      if (res.status !== 200) {
        throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      }
      return json;
    },
    async close() {
      kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
