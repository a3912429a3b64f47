/**
 * Real Tessera processes federating over HTTPS on loopback, the base of the multi-process
 * federation tests. Each runs `main.ts` on its own KV file and port, named `127.0.0.1:PORT`
 * (Synapse, and the spec for IP literals, dial the port in the name), serving TLS with a leaf
 * of a throwaway CA (`IP:127.0.0.1, DNS:localhost`) that every process trusts through
 * TESSERA_FEDERATION_CA_FILE, with TESSERA_FEDERATION_ALLOW_PRIVATE=true for loopback.
 *
 * Processes are spawned with `Deno.execPath()`, the deno binary itself: a SIGTERM reaches the
 * server directly (the npm `deno` wrapper would not forward it).
 *
 * ```ts
 * const cluster = await startServerProcesses(2);
 * try {
 *   const [a, b] = cluster.servers;
 *   const alice = await a.register("alice");
 *   ...
 * } finally {
 *   await cluster.stop();
 * }
 * ```
 */
import { createTestCa, type TestCa } from "./test_certificates.ts";
import type { JsonResponse, RequestOptions } from "../routes/test_server.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";

const mainPath = new URL("../../main.ts", import.meta.url).pathname;

/** One running (or stopped, restartable) server process. */
export interface FederationProcess {
  /** `127.0.0.1:<port>`: its server name. */
  readonly serverName: string;
  readonly port: number;
  /** `https://127.0.0.1:<port>` */
  readonly baseUrl: string;
  /** Its KV file (kept across restarts, removed by the cluster's stop). */
  readonly kvPath: string;
  /** The environment it runs with. */
  readonly env: Readonly<Record<string, string>>;
  /** fetch against this server, trusting the test CA. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** A JSON request, as `startTestServer().request` makes one. */
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  /** Register a user through the client API (m.login.dummy, no password). */
  register(localpart: string, password?: string): Promise<RegisteredUser>;
  /** What the process printed so far, over all its runs. */
  output(): string;
  /** Stop it (SIGTERM, SIGKILL after 10 s); its KV file stays. */
  stop(): Promise<void>;
  /** Start it again on the same port, KV file and name; `env` overrides variables. */
  start(env?: Record<string, string>): Promise<void>;
}

/** Several processes and the CA they trust. */
export interface FederationCluster {
  readonly servers: FederationProcess[];
  readonly ca: TestCa;
  /** The CA's PEM file, as TESSERA_FEDERATION_CA_FILE names it. */
  readonly caFile: string;
  /** The leaf every server serves (PEM files). */
  readonly certFile: string;
  readonly keyFile: string;
  /** Stop every process and remove the temporary directory. */
  stop(): Promise<void>;
}

/** Options for `startServerProcesses`. */
export interface ServerProcessOptions {
  /** Variables for every server. */
  env?: Record<string, string>;
  /** Variables for the i-th server, over `env`. */
  envFor?: (index: number) => Record<string, string>;
}

/** A loopback port nobody is listening on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Start `count` processes (in parallel) and resolve once each answers over HTTPS. */
export async function startServerProcesses(
  count: number,
  options: ServerProcessOptions = {},
): Promise<FederationCluster> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-federation-" });
  const ca = await createTestCa();
  const leaf = await ca.issue({ dns: ["localhost"], ips: ["127.0.0.1"] });
  const caFile = `${dir}/ca.pem`;
  const certFile = `${dir}/leaf.pem`;
  const keyFile = `${dir}/leaf.key`;
  await Deno.writeTextFile(caFile, ca.caPem);
  await Deno.writeTextFile(certFile, leaf.certPem);
  await Deno.writeTextFile(keyFile, leaf.keyPem);
  const client = Deno.createHttpClient({ caCerts: [ca.caPem] });
  const servers: FederationProcess[] = [];
  for (let i = 0; i < count; i++) {
    const port = freePort();
    const env = {
      NO_COLOR: "1",
      TESSERA_SERVER_NAME: `127.0.0.1:${port}`,
      TESSERA_PORT: String(port),
      TESSERA_HOSTNAME: "127.0.0.1",
      TESSERA_PUBLIC_BASEURL: `https://127.0.0.1:${port}`,
      TESSERA_KV_PATH: `${dir}/server${i}/tessera.kv`,
      TESSERA_TLS_CERT: certFile,
      TESSERA_TLS_KEY: keyFile,
      TESSERA_FEDERATION_CA_FILE: caFile,
      TESSERA_FEDERATION_ALLOW_PRIVATE: "true",
      TESSERA_REGISTRATION: "open",
      TESSERA_RATE_LIMITS: "off",
      ...options.env,
      ...options.envFor?.(i),
    };
    await Deno.mkdir(`${dir}/server${i}`);
    servers.push(serverProcess(env, port, client));
  }
  const cluster: FederationCluster = {
    servers,
    ca,
    caFile,
    certFile,
    keyFile,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      client.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await Promise.all(servers.map((s) => s.start()));
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

function serverProcess(
  baseEnv: Record<string, string>,
  port: number,
  client: Deno.HttpClient,
): FederationProcess {
  const baseUrl = `https://127.0.0.1:${port}`;
  const chunks: string[] = [];
  let env = baseEnv;
  let child: Deno.ChildProcess | undefined;
  let drained: Promise<unknown> = Promise.resolve();

  const fetchHere = (path: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}${path}`, { ...init, client });

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
    const res = await fetchHere(path, { method, headers: all, body: payload });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  async function stop(): Promise<void> {
    const running = child;
    if (running === undefined) return;
    child = undefined;
    try {
      running.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        running.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }, 10_000);
    await running.status;
    clearTimeout(timer);
    await drained;
  }

  async function start(overrides: Record<string, string> = {}): Promise<void> {
    if (child !== undefined) throw new Error(`${baseEnv.TESSERA_SERVER_NAME} is running`);
    env = { ...env, ...overrides };
    const spawned = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", mainPath],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    child = spawned;
    // Drain both pipes continuously so a chatty server never blocks on a full pipe.
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) chunks.push(text);
    };
    drained = Promise.all([drain(spawned.stdout), drain(spawned.stderr)]).catch(() => {});
    const exited = spawned.status;
    const deadline = Date.now() + 60_000;
    while (true) {
      const early = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, null))]);
      if (early) {
        child = undefined;
        await drained;
        const code = (early as Deno.CommandStatus).code;
        throw new Error(`${env.TESSERA_SERVER_NAME} exited with code ${code}:\n${chunks.join("")}`);
      }
      try {
        const res = await fetchHere("/health");
        await res.body?.cancel();
        if (res.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `${env.TESSERA_SERVER_NAME} did not answer within 60 s:\n${chunks.join("")}`,
        );
      }
    }
  }

  const process: FederationProcess = {
    serverName: baseEnv.TESSERA_SERVER_NAME,
    port,
    baseUrl,
    kvPath: baseEnv.TESSERA_KV_PATH,
    get env() {
      return env;
    },
    fetch: fetchHere,
    request,
    register: (localpart, password) => registerUser(process, localpart, password),
    output: () => chunks.join(""),
    stop,
    start,
  };
  return process;
}
