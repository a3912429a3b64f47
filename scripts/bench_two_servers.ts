/**
 * What the benchmarks between two servers share (bench_federation_latency.ts,
 * bench_federation_edus.ts, bench_federation_to_device.ts): their flags, a client call that must
 * answer 200, a room on A joined from B, a filtered /sync long-poll, and running one measurement
 * either on two real processes over HTTPS (tests/federation/server_processes.ts) or on the
 * in-process test network, plus the report's mode and environment lines.
 */
import { startServerProcesses } from "../tests/federation/server_processes.ts";
import { startNetwork } from "../tests/federation/in_process_network.ts";
import type { RegisteredUser } from "../tests/routes/client_harness.ts";
import type { JsonResponse, RequestOptions } from "../tests/routes/test_server.ts";

/** The number given as `--name=N` on the command line, else `fallback`. */
export function numberFlag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

/** `--in-process`: both servers in this process over the in-process network. */
export const IN_PROCESS = Deno.args.includes("--in-process");

/** What a benchmark needs of a server, in a process or in this one. */
export interface BenchServer {
  readonly name: string;
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  register(localpart: string): Promise<RegisteredUser>;
}

/** A client call that must answer 200 (else the benchmark fails naming it); its body. */
export async function ok(
  server: BenchServer,
  method: string,
  path: string,
  options: RequestOptions = {},
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const res = await server.request(method, path, options);
  if (res.status !== 200) {
    throw new Error(`${server.name} ${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body;
}

/** `creator` makes a public room on `a` and `joiner` on `b` joins it over federation; its ID. */
export async function sharedPublicRoom(
  a: BenchServer,
  creator: RegisteredUser,
  b: BenchServer,
  joiner: RegisteredUser,
): Promise<string> {
  const enc = encodeURIComponent;
  const created = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
    token: creator.accessToken,
    body: { preset: "public_chat" },
  });
  const roomId: string = created.room_id;
  await ok(b, "POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${enc(a.name)}`, {
    token: joiner.accessToken,
    body: {},
  });
  return roomId;
}

/**
 * One /sync of `user` on `server` with the JSON `filter`, from `since` (an initial sync when
 * undefined), long-polling up to `timeoutMs`; its body.
 */
export function syncOnce(
  server: BenchServer,
  user: RegisteredUser,
  filter: string,
  since: string | undefined,
  timeoutMs: number,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const enc = encodeURIComponent;
  return ok(
    server,
    "GET",
    `/_matrix/client/v3/sync?filter=${enc(filter)}&timeout=${timeoutMs}` +
      (since === undefined ? "" : `&since=${enc(since)}`),
    { token: user.accessToken },
  );
}

/**
 * Run `measure` on servers A and B: two real processes over HTTPS on loopback with a throwaway
 * CA, each on its own KV file, or with `inProcess` both in this process over the in-process
 * network (`:memory:` KV, no sockets, no TLS; its senders started here, as main() would). On a
 * failure the processes' output tails are printed.
 */
export async function onTwoServers<T>(
  inProcess: boolean,
  measure: (a: BenchServer, b: BenchServer) => Promise<T>,
): Promise<T> {
  if (inProcess) {
    const net = await startNetwork(["a.test", "b.test"]);
    const { "a.test": a, "b.test": b } = net.servers;
    a.deps.federationSender.start();
    b.deps.federationSender.start();
    try {
      return await measure(a, b);
    } finally {
      await a.deps.federationSender.stop();
      await b.deps.federationSender.stop();
      await net.close();
    }
  }
  const cluster = await startServerProcesses(2);
  try {
    const [a, b] = cluster.servers.map((s): BenchServer => ({
      name: s.serverName,
      request: (method, path, options) => s.request(method, path, options),
      register: (localpart) => s.register(localpart),
    }));
    return await measure(a, b);
  } catch (error) {
    for (const s of cluster.servers) {
      console.error(`--- ${s.serverName}\n${s.output().slice(-4000)}`);
    }
    throw error;
  } finally {
    await cluster.stop();
  }
}

/** How `onTwoServers` runs them, for the report's first line. */
export function twoServersMode(inProcess: boolean): string {
  return inProcess
    ? "in one process (in-process network, :memory: KV)"
    : "two processes (HTTPS on loopback, KV files)";
}

/** The report's last line: Deno version, CPUs, seconds since `startedMs`, load average. */
export function environmentLine(startedMs: number): string {
  return `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
    `${((performance.now() - startedMs) / 1000).toFixed(0)} s, load average ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    }`;
}
