/**
 * The real server as a subprocess for real-client tests: `main.ts --dev` on a KV file in a fresh
 * temporary directory, on a free loopback port, with rate limits off. Its output is kept so a
 * failing test can show what the server said.
 */

const mainPath = new URL("../../main.ts", import.meta.url).pathname;

/** A running server: its base URL, server name, captured output, and `stop()`. */
export interface ServerProcess {
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string;
  /** `localhost:<port>`, the part after the colon in user IDs. */
  readonly serverName: string;
  readonly port: number;
  /** Everything the server has printed so far (stdout and stderr interleaved). */
  output(): string;
  /** Stop the server with SIGTERM, wait for it, and remove its KV directory. */
  stop(): Promise<void>;
}

/** A loopback port nobody is listening on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Start `main.ts --dev` and resolve once `/health` answers 200; `env` adds or overrides variables
 * (`TESSERA_KV_PATH` and `TESSERA_SERVER_NAME` too, so several processes can share one store and
 * name), and `port` picks the port instead of a free one.
 */
export async function startServerProcess(
  env: Record<string, string> = {},
  port: number = freePort(),
): Promise<ServerProcess> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-client-test-" });
  const serverName = env.TESSERA_SERVER_NAME ?? `localhost:${port}`;
  const baseUrl = `http://127.0.0.1:${port}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", mainPath, "--dev"],
    env: {
      NO_COLOR: "1",
      TESSERA_PORT: String(port),
      TESSERA_HOSTNAME: "127.0.0.1",
      TESSERA_SERVER_NAME: serverName,
      TESSERA_PUBLIC_BASEURL: baseUrl,
      TESSERA_KV_PATH: `${dir}/tessera.kv`,
      TESSERA_REGISTRATION: "open",
      TESSERA_RATE_LIMITS: "off",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const chunks: string[] = [];
  // Drain both pipes continuously so a chatty server never blocks on a full pipe.
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) chunks.push(text);
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).catch(() => {});
  const output = () => chunks.join("");

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }, 10_000);
    await child.status;
    clearTimeout(timer);
    await drained;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const exited = child.status.then((status) => status);
  const deadline = Date.now() + 60_000;
  while (true) {
    const early = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, null))]);
    if (early) {
      await stop();
      throw new Error(
        `server exited with code ${(early as Deno.CommandStatus).code}:\n${output()}`,
      );
    }
    try {
      const res = await fetch(`${baseUrl}/health`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`server did not become healthy within 60 s:\n${output()}`);
    }
  }
  return { baseUrl, serverName, port, output, stop };
}
