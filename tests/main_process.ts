/**
 * The real entry point (`main.ts`) as a child process, the one base of every test that runs
 * real server processes: the fleet harness (tests/fleet/), the federating processes
 * (tests/federation/server_processes.ts), the real-client server (tests/clients/) and the
 * shutdown tests. A process can be started, killed or stopped, and started again on the same
 * port and KV file.
 *
 * It is `Deno.execPath()` (the deno binary itself, not the npm wrapper, which does not forward
 * signals) in its own process group (`detached`), signalled through the group: `kill()` really
 * kills, whatever the server does with signals, and nothing of it outlives the test process.
 */
import type { JsonResponse, RequestOptions } from "./routes/test_server.ts";
import { jsonRequest } from "./json_request.ts";

const mainPath = new URL("../main.ts", import.meta.url).pathname;

/** A loopback port nobody is listening on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** One `main.ts` process (running, or stopped and restartable). */
export interface MainProcess {
  /** The environment it runs with (after the overrides of the latest `start`). */
  readonly env: Readonly<Record<string, string>>;
  /** True from `start()` until `kill()`/`stop()`. */
  readonly running: boolean;
  /** A JSON request to this process, as `startTestServer().request` makes one. */
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  /** Everything the process printed so far (stdout and stderr), over all its runs. */
  output(): string;
  /** Send `signal` (SIGKILL by default) to its process group and wait for it to exit. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus | undefined>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Start it (again) and resolve once `/health` answers; `env` overrides variables from now. */
  start(env?: Record<string, string>): Promise<void>;
}

/** What `mainProcess` runs and how it reaches it. */
export interface MainProcessOptions {
  /** Its environment (NO_COLOR is added). */
  env: Record<string, string>;
  /** Names it in errors and in its output's start markers. */
  label: string;
  /** `fetch` against the process (a base URL and, for TLS, a client that trusts its CA). */
  fetch: (path: string, init?: RequestInit) => Promise<Response>;
  /** Arguments after `main.ts` (`--dev`, say). */
  args?: string[];
  /** How long it may take to answer /health (60 s by default: 2 cores, cold cache). */
  startTimeoutMs?: number;
  /** `stop()`'s grace before SIGKILL (5 s by default, as Deno Deploy gives). */
  stopGraceMs?: number;
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

/** A `main.ts` process, not started yet. */
export function mainProcess(options: MainProcessOptions): MainProcess {
  const { label } = options;
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const chunks: string[] = [];
  let env: Record<string, string> = { NO_COLOR: "1", ...options.env };
  let child: Deno.ChildProcess | undefined;
  let drained: Promise<unknown> = Promise.resolve();

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

  async function stop(graceMs = options.stopGraceMs ?? 5_000): Promise<void> {
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
    if (child !== undefined) throw new Error(`${label} is running`);
    env = { ...env, ...overrides };
    chunks.push(`[test harness: starting ${label}]\n`);
    const spawned = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", mainPath, ...options.args ?? []],
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
        throw new Error(`${label} exited with code ${code}:\n${chunks.join("")}`);
      }
      try {
        const res = await options.fetch("/health");
        await res.body?.cancel();
        if (res.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) {
        await kill("SIGKILL");
        throw new Error(`${label} did not answer within ${startTimeoutMs} ms:\n${chunks.join("")}`);
      }
    }
  }

  return {
    get env() {
      return env;
    },
    get running() {
      return child !== undefined;
    },
    request: (method, path, requestOptions) =>
      jsonRequest(options.fetch, method, path, requestOptions),
    output: () => chunks.join(""),
    kill,
    stop,
    start,
  };
}
