/**
 * The server under test for `scripts/bench_client.ts`: the real entry point (main.ts) as a child
 * process on a file-backed KV, spawned with `Deno.execPath()` directly so the child's pid is the
 * deno process itself (no npm/node wrapper), whose resident memory and sockets we read from /proc.
 */

const MAIN_PATH = new URL("../main.ts", import.meta.url).pathname;

/** How to start the server. */
export interface ServerOptions {
  /** Directory holding the KV file; kept across restarts. */
  dir: string;
  port: number;
  /** Extra `deno run` flags, e.g. `--cpu-prof` for a profile. */
  denoFlags?: readonly string[];
  /** Show the server's stderr (warnings, errors) on ours. */
  verbose?: boolean;
  /** Variables added to (or overriding) the server's environment. */
  env?: Record<string, string>;
}

/** A running server process. */
export interface ServerProcess {
  readonly pid: number;
  readonly base: string;
  /** SIGTERM (graceful: main.ts shuts the HTTP server and closes KV), SIGKILL after 10 s. */
  stop(): Promise<void>;
}

/** A loopback port nobody listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Start main.ts with open registration and no rate limits; resolves once /health answers. */
export async function startServer(options: ServerOptions): Promise<ServerProcess> {
  const { port } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...(options.denoFlags ?? []), MAIN_PATH],
    env: {
      NO_COLOR: "1",
      TESSERA_PORT: String(port),
      TESSERA_HOSTNAME: "127.0.0.1",
      TESSERA_SERVER_NAME: `localhost:${port}`,
      TESSERA_KV_PATH: `${options.dir}/tessera.kv`,
      TESSERA_REGISTRATION: "open",
      TESSERA_RATE_LIMITS: "off",
      ...options.env,
    },
    stdin: "null",
    stdout: options.verbose ? "inherit" : "null",
    stderr: options.verbose ? "inherit" : "null",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`server exited during start-up: ${JSON.stringify(await status)}`);
    try {
      const res = await fetch(`${base}/health`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("server did not become healthy within 60 s");
    }
    await sleep(50);
  }
  return {
    pid: child.pid,
    base,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!exited) child.kill("SIGKILL");
      }, 10_000);
      await status;
      clearTimeout(timer);
    },
  };
}

/** Resident set size and its high-water mark of a process, in MiB (from /proc/<pid>/status). */
export function memoryOf(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(match[1]);
  };
  return { rssMiB: kib("VmRSS") / 1024, hwmMiB: kib("VmHWM") / 1024 };
}

/** The process's command name, to confirm the pid is deno itself and not a wrapper. */
export function commandOf(pid: number): string {
  return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
}

/** CPU time (user + system) a process has used so far, in seconds (from /proc/<pid>/stat). */
export function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** How many socket file descriptors a process holds (listener, clients, anything else). */
export function socketCount(pid: number | "self"): number {
  let n = 0;
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`).startsWith("socket:")) n++;
    } catch { /* closed while we looked */ }
  }
  return n;
}

/** Samples a process's RSS every `intervalMs`, keeping the peak of the current window. */
export class RssSampler {
  #peak = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  /** Start sampling `pid`. */
  constructor(private pid: number, intervalMs = 100) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Take one sample now; returns it in MiB. */
  sample(): number {
    try {
      const { rssMiB } = memoryOf(this.pid);
      this.#peak = Math.max(this.#peak, rssMiB);
      return rssMiB;
    } catch {
      return 0; // the process is restarting or gone
    }
  }

  /** Follow another process (after a restart) and start a new window. */
  follow(pid: number): void {
    this.pid = pid;
    this.#peak = 0;
  }

  /** The peak since the last call, then start a new window. */
  takePeak(): number {
    this.sample();
    const peak = this.#peak;
    this.#peak = 0;
    return peak;
  }

  /** Stop sampling. */
  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
