/**
 * A fleet of real Tessera processes on ONE KV file, the base of the multi-process tests of
 * issue 12: one server name, one store, a port and a base URL per process, so clients spread
 * over the processes see one homeserver (as isolates on Deno Deploy serve one app).
 *
 * Each process is `main.ts` run by `Deno.execPath()` (the deno binary itself, not the npm
 * wrapper, which does not forward signals) in its own process group (`detached`), and is
 * signalled through the group: `kill()` really kills, whatever the server does with signals.
 * A process can be killed (SIGKILL: a crash, nothing given back) or stopped (SIGTERM: the
 * graceful path), and started again on the same port and KV file.
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
import type { JsonResponse, RequestOptions } from "../routes/test_server.ts";

const mainPath = new URL("../../main.ts", import.meta.url).pathname;

/** One server process of the fleet (running, or stopped and restartable). */
export interface FleetProcess {
  /** Its place in `fleet.processes`. */
  readonly index: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>`: the client URL of this process. */
  readonly baseUrl: string;
  /** The environment it runs with (after the overrides of the latest `start`). */
  readonly env: Readonly<Record<string, string>>;
  /** True from `start()` until `kill()`/`stop()`. */
  readonly running: boolean;
  /** A JSON request to this process, as `startTestServer().request` makes one. */
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  /** Everything the process printed so far, over all its runs. */
  output(): string;
  /** Send `signal` (SIGKILL by default) to its process group and wait for it to exit. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus | undefined>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (5 s by default). */
  stop(graceMs?: number): Promise<void>;
  /** Start it (again) on the same port and KV file; `env` overrides variables from now on. */
  start(env?: Record<string, string>): Promise<void>;
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

/** A loopback port nobody is listening on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Process groups still alive, killed when the test process unloads: a test that dies before its
 * `finally` leaves no server behind (detached processes would otherwise outlive it).
 */
const liveGroups = new Set<number>();
globalThis.addEventListener("unload", () => {
  for (const pid of liveGroups) {
    try {
      Deno.kill(-pid, "SIGKILL");
    } catch { /* gone already */ }
  }
});

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
  baseEnv: Record<string, string>,
  startTimeoutMs: number,
): FleetProcess {
  const baseUrl = `http://127.0.0.1:${port}`;
  const chunks: string[] = [];
  let env = baseEnv;
  let child: Deno.ChildProcess | undefined;
  let drained: Promise<unknown> = Promise.resolve();

  async function request(
    method: string,
    path: string,
    { body, token, headers = {} }: RequestOptions = {},
  ): Promise<JsonResponse> {
    const all: Record<string, string> = { ...headers };
    if (token) all.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : JSON.stringify(body);
      all["content-type"] = "application/json";
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers: all, body: payload });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  function signalGroup(running: Deno.ChildProcess, signal: Deno.Signal): void {
    try {
      Deno.kill(-running.pid, signal);
    } catch { /* the group is gone */ }
  }

  async function kill(signal: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus | undefined> {
    const running = child;
    if (running === undefined) return undefined;
    child = undefined;
    signalGroup(running, signal);
    const status = await running.status;
    liveGroups.delete(running.pid);
    // Whatever the signal, nothing of the group outlives the process.
    signalGroup(running, "SIGKILL");
    await drained;
    return status;
  }

  async function stop(graceMs = 5_000): Promise<void> {
    const running = child;
    if (running === undefined) return;
    // A server's graceful shutdown waits for open long-polls; past the grace period, kill.
    const timer = setTimeout(() => signalGroup(running, "SIGKILL"), graceMs);
    try {
      await kill("SIGTERM");
    } finally {
      clearTimeout(timer);
    }
  }

  async function start(overrides: Record<string, string> = {}): Promise<void> {
    if (child !== undefined) throw new Error(`process ${index} (${baseUrl}) is running`);
    env = { ...env, ...overrides };
    chunks.push(`[fleet harness: starting process ${index}]\n`);
    const spawned = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", mainPath],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
    child = spawned;
    liveGroups.add(spawned.pid);
    // Drain both pipes continuously so a chatty server never blocks on a full pipe.
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) chunks.push(text);
    };
    drained = Promise.all([drain(spawned.stdout), drain(spawned.stderr)]).catch(() => {});
    const exited = spawned.status;
    const deadline = Date.now() + startTimeoutMs;
    while (true) {
      const early = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, null))]);
      if (early) {
        child = undefined;
        liveGroups.delete(spawned.pid);
        await drained;
        const code = (early as Deno.CommandStatus).code;
        throw new Error(`process ${index} exited with code ${code}:\n${chunks.join("")}`);
      }
      try {
        const res = await fetch(`${baseUrl}/health`);
        await res.body?.cancel();
        if (res.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) {
        await kill("SIGKILL");
        throw new Error(
          `process ${index} did not answer within ${startTimeoutMs} ms:\n${chunks.join("")}`,
        );
      }
    }
  }

  return {
    index,
    port,
    baseUrl,
    get env() {
      return env;
    },
    get running() {
      return child !== undefined;
    },
    request,
    output: () => chunks.join(""),
    kill,
    stop,
    start,
  };
}
