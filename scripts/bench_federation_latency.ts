/**
 * `deno task bench:federation`: the delay from a message sent on server A until a /sync
 * long-poll of a user on server B returns it (target: p50 <= 50 ms on loopback). The whole path
 * is measured: A's send and commit with the federation outbox entry, A's sender waking and
 * sending the transaction over HTTPS, B's /send checking the PDU (signatures, hashes, auth) and
 * appending it, and B's sync waking.
 *
 * By default A and B are real processes over HTTPS on loopback with a throwaway CA (the
 * multi-process harness of tests/federation/server_processes.ts), each on its own KV file.
 * `--in-process` runs both in this process over the in-process test network instead (no
 * sockets, no TLS, `:memory:` KV): what is left is the protocol work.
 *
 * Bob (on B) joins Alice's room (on A) through the real make_join/send_join, then each round
 * parks Bob's long-poll, sends one message from Alice, and waits for the poll to return it.
 *
 * Flags: --sends=N (measured sends, default 100), --warmup=N (default 5), --in-process.
 */
import { startServerProcesses } from "../tests/federation/server_processes.ts";
import { startNetwork } from "../tests/federation/in_process_network.ts";
import type { RegisteredUser } from "../tests/routes/client_harness.ts";
import type { JsonResponse, RequestOptions } from "../tests/routes/test_server.ts";
import { markdownTable } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const SENDS = flag("sends", 100);
const WARMUP = flag("warmup", 5);
const IN_PROCESS = Deno.args.includes("--in-process");
const enc = encodeURIComponent;
/** Bob's sync: the room timeline only, so a round's poll returns for its message alone. */
const FILTER = JSON.stringify({
  room: { timeline: { limit: 10 }, ephemeral: { types: [] }, account_data: { types: [] } },
  presence: { types: [] },
  account_data: { types: [] },
});

/** What the benchmark needs of a server, in a process or in this one. */
interface Server {
  readonly name: string;
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  register(localpart: string): Promise<RegisteredUser>;
}

async function ok(server: Server, method: string, path: string, options: RequestOptions = {}) {
  const res = await server.request(method, path, options);
  if (res.status !== 200) {
    throw new Error(`${server.name} ${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** Bob joins Alice's room; then SENDS + WARMUP rounds of send-on-A, long-poll-returns-on-B. */
async function measure(a: Server, b: Server): Promise<number[]> {
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const created = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  const roomId: string = created.room_id;
  await ok(b, "POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${enc(a.name)}`, {
    token: bob.accessToken,
    body: {},
  });
  const sync = (since: string | undefined, timeout: number) =>
    ok(
      b,
      "GET",
      `/_matrix/client/v3/sync?filter=${enc(FILTER)}&timeout=${timeout}` +
        (since === undefined ? "" : `&since=${enc(since)}`),
      { token: bob.accessToken },
    );
  let since: string = (await sync(undefined, 0)).next_batch;

  const delays: number[] = [];
  for (let round = 0; round < WARMUP + SENDS; round++) {
    const body = `round ${round}`;
    const seen = (async () => {
      for (;;) {
        const response = await sync(since, 30_000);
        since = response.next_batch;
        const events = response.rooms?.join?.[roomId]?.timeline?.events ?? [];
        if (events.some((e: { content?: { body?: string } }) => e.content?.body === body)) {
          return performance.now();
        }
      }
    })();
    // Let the poll park on B first, so it is the wake-up that returns it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const sent = performance.now();
    await ok(
      a,
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
      { token: alice.accessToken, body: { msgtype: "m.text", body } },
    );
    const returned = await seen;
    if (round >= WARMUP) delays.push(returned - sent);
  }
  return delays;
}

async function inProcess(): Promise<number[]> {
  const net = await startNetwork(["a.test", "b.test"]);
  const { "a.test": a, "b.test": b } = net.servers;
  // The network's servers are assembled as main.ts does, but main() starts the senders.
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

async function processes(): Promise<number[]> {
  const cluster = await startServerProcesses(2);
  try {
    const [a, b] = cluster.servers.map((s): Server => ({
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

const mode = IN_PROCESS
  ? "in one process (in-process network, :memory: KV)"
  : "two processes (HTTPS on loopback, KV files)";
console.log(`Federation latency, ${mode}: ${SENDS} sends after ${WARMUP} warm-up`);
const started = performance.now();
const delays = (IN_PROCESS ? await inProcess() : await processes()).sort((x, y) => x - y);
const ms = (v: number) => v.toFixed(1);
const p50 = quantile(delays, 0.5);
console.log();
console.log(markdownTable(["metric", "unit", "value", "target"], [
  ["send on A -> long-poll on B returns it, p50", "ms", ms(p50), "≤ 50"],
  ["send on A -> long-poll on B returns it, p99", "ms", ms(quantile(delays, 0.99)), "—"],
  ["min / max", "ms", `${ms(delays[0])} / ${ms(delays[delays.length - 1])}`, "—"],
]));
console.log();
console.log(
  `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s, load average ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    }; p50 ${p50 <= 50 ? "meets" : "misses"} the 50 ms target`,
);
