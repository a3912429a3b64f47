/**
 * A fleet of real Tessera processes on ONE KV file, the base of the multi-process tests of
 * issue 12: one server name, one store, a port and a base URL per process, so clients spread
 * over the processes see one homeserver (as isolates on Deno Deploy serve one app).
 *
 * Each process is a `mainProcess` (tests/main_process.ts: its own process group, so `kill()`
 * really kills). A process can be killed (SIGKILL: a crash, nothing given back) or stopped
 * (SIGTERM: the graceful path), and started again on the same port and KV file.
 *
 * ```ts
 * const fleet = await startFleet(3, { env: { TESSERA_WAKE: "poll" } });
 * try {
 *   const [a, b] = fleet.processes;
 *   const alice = await registerUser(a, "alice");
 *   await b.request("GET", "/_matrix/client/v3/account/whoami", { token: alice.accessToken });
 *   await a.kill();
 *   await a.start();
 * } finally {
 *   await fleet.stop();
 * }
 * ```
 */
import { freePort, type MainProcess, mainProcess } from "../main_process.ts";

/** One server process of the fleet (running, or stopped and restartable). */
export interface FleetProcess extends MainProcess {
  /** Its place in `fleet.processes`. */
  readonly index: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>`: the client URL of this process. */
  readonly baseUrl: string;
}

/** N processes on one KV file. */
export interface Fleet {
  readonly processes: FleetProcess[];
  /** The one server name all processes serve (`localhost:<port of process 0>`). */
  readonly serverName: string;
  /** The KV file they share. */
  readonly kvPath: string;
  /** The output of every process, labelled, for a failure report. */
  output(): string;
  /** Stop every process (SIGTERM, SIGKILL after a grace period) and remove the KV directory. */
  stop(): Promise<void>;
}

/** Options for `startFleet`. */
export interface FleetOptions {
  /**
   * Variables for every process, over the defaults (`TESSERA_REGISTRATION=open`,
   * `TESSERA_RATE_LIMITS=off`, `TESSERA_WAKE=poll`, `TESSERA_WAKE_POLL_MS=100`).
   */
  env?: Record<string, string>;
  /** Variables for the i-th process, over `env`. */
  envFor?: (index: number) => Record<string, string>;
  /** How long a process may take to answer /health (60 s by default: 2 cores, cold cache). */
  startTimeoutMs?: number;
}

/**
 * Start `count` processes on one fresh KV file (in parallel, as a fleet cold-starts) and resolve
 * once each answers `/health`. On any failure the ones started are stopped and the error carries
 * the processes' output.
 */
export async function startFleet(count: number, options: FleetOptions = {}): Promise<Fleet> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-fleet-" });
  const kvPath = `${dir}/tessera.kv`;
  const ports = Array.from({ length: count }, () => freePort());
  const serverName = `localhost:${ports[0]}`;
  const processes = ports.map((port, index) => {
    const env: Record<string, string> = {
      NO_COLOR: "1",
      TESSERA_SERVER_NAME: serverName,
      TESSERA_PORT: String(port),
      TESSERA_HOSTNAME: "127.0.0.1",
      TESSERA_PUBLIC_BASEURL: `http://127.0.0.1:${ports[0]}`,
      TESSERA_KV_PATH: kvPath,
      TESSERA_REGISTRATION: "open",
      TESSERA_RATE_LIMITS: "off",
      TESSERA_WAKE: "poll",
      TESSERA_WAKE_POLL_MS: "100",
      ...options.env,
      ...options.envFor?.(index),
    };
    return fleetProcess(index, port, env, options.startTimeoutMs ?? 60_000);
  });
  const output = () =>
    processes.map((p) => `--- process ${p.index} (${p.baseUrl}) ---\n${p.output()}`).join("\n");
  const fleet: Fleet = {
    processes,
    serverName,
    kvPath,
    output,
    async stop() {
      await Promise.all(processes.map((p) => p.stop()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await Promise.all(processes.map((p) => p.start()));
  } catch (error) {
    await fleet.stop();
    throw error;
  }
  return fleet;
}

function fleetProcess(
  index: number,
  port: number,
  env: Record<string, string>,
  startTimeoutMs: number,
): FleetProcess {
  const baseUrl = `http://127.0.0.1:${port}`;
  const process = mainProcess({
    env,
    label: `process ${index} (${baseUrl})`,
    fetch: (path, init) => fetch(`${baseUrl}${path}`, init),
    startTimeoutMs,
  });
  return Object.assign(process, { index, port, baseUrl });
}
