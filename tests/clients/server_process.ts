/**
 * The real server as a subprocess for real-client tests: `main.ts --dev` on a KV file in a fresh
 * temporary directory, on a free loopback port, with rate limits off. Its output is kept so a
 * failing test can show what the server said.
 */

import { freePort, mainProcess } from "../main_process.ts";

/** A running server: its base URL, server name, captured output, and `stop()`. */
export interface ServerProcess {
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string;
  /** `localhost:<port>`, the part after the colon in user IDs. */
  readonly serverName: string;
  readonly port: number;
  /** Everything the server has printed so far (stdout and stderr interleaved). */
  output(): string;
  /** Stop the server with SIGTERM (SIGKILL after 10 s), wait for it, remove its KV directory. */
  stop(): Promise<void>;
}

/**
 * Start `main.ts --dev` and resolve once `/health` answers 200; `env` adds or overrides variables
 * (`TESSERA_KV_PATH` and `TESSERA_SERVER_NAME` too, so several processes can share one store and
 * name), and `port` picks the port instead of a free one.
 */
export async function startServerProcess(
  env: Record<string, string> = {},
  port?: number,
): Promise<ServerProcess> {
  if (port !== undefined) return await startOnPort(env, port);
  // A port found free may be taken by a parallel test process before the server binds it:
  // then the server exits with AddrInUse, and another free port is tried.
  for (let attempt = 1;; attempt++) {
    try {
      return await startOnPort(env, freePort());
    } catch (error) {
      if (attempt === 3 || !/AddrInUse|address already in use/i.test(String(error))) throw error;
    }
  }
}

async function startOnPort(env: Record<string, string>, port: number): Promise<ServerProcess> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-client-test-" });
  const serverName = env.TESSERA_SERVER_NAME ?? `localhost:${port}`;
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = mainProcess({
    args: ["--dev"],
    env: {
      TESSERA_PORT: String(port),
      TESSERA_HOSTNAME: "127.0.0.1",
      TESSERA_SERVER_NAME: serverName,
      TESSERA_PUBLIC_BASEURL: baseUrl,
      TESSERA_KV_PATH: `${dir}/tessera.kv`,
      TESSERA_REGISTRATION: "open",
      TESSERA_RATE_LIMITS: "off",
      ...env,
    },
    label: "server",
    fetch: (path, init) => fetch(`${baseUrl}${path}`, init),
    stopGraceMs: 10_000,
  });
  const stop = async () => {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await server.start();
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseUrl, serverName, port, output: server.output, stop };
}
