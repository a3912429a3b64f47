/**
 * Real Tessera processes federating over HTTPS on loopback, the base of the multi-process
 * federation tests. Each runs `main.ts` on its own KV file and port, named `127.0.0.1:PORT`
 * (Synapse, and the spec for IP literals, dial the port in the name), serving TLS with a leaf
 * of a throwaway CA (`IP:127.0.0.1, DNS:localhost`) that every process trusts through
 * TESSERA_FEDERATION_CA_FILE, with TESSERA_FEDERATION_ALLOW_PRIVATE=true for loopback.
 *
 * Each process is a `mainProcess` (tests/main_process.ts), reached through an HTTP client that
 * trusts the test CA.
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
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { freePort, type MainProcess, mainProcess } from "../main_process.ts";

/** One running (or stopped, restartable) server process; `stop()` gives it 10 s. */
export interface FederationProcess extends MainProcess {
  /** `127.0.0.1:<port>`: its server name. */
  readonly serverName: string;
  readonly port: number;
  /** `https://127.0.0.1:<port>` */
  readonly baseUrl: string;
  /** Its KV file (kept across restarts, removed by the cluster's stop). */
  readonly kvPath: string;
  /** fetch against this server, trusting the test CA. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Register a user through the client API (m.login.dummy, no password). */
  register(localpart: string, password?: string): Promise<RegisteredUser>;
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
  env: Record<string, string>,
  port: number,
  client: Deno.HttpClient,
): FederationProcess {
  const baseUrl = `https://127.0.0.1:${port}`;
  const fetchHere = (path: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}${path}`, { ...init, client });
  const process = mainProcess({
    env,
    label: env.TESSERA_SERVER_NAME,
    fetch: fetchHere,
    stopGraceMs: 10_000,
  });
  return Object.assign(process, {
    serverName: env.TESSERA_SERVER_NAME,
    port,
    baseUrl,
    kvPath: env.TESSERA_KV_PATH,
    fetch: fetchHere,
    register: (localpart: string, password?: string) => registerUser(process, localpart, password),
  });
}
