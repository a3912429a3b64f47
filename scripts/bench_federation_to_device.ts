/**
 * `deno task bench:federation-to-device`: one `/sendToDevice` on server A to 100 users on
 * server B (one device each, about 1 KB per message, as an Olm-encrypted room key share), timed
 * from the request until every recipient's /sync long-poll on B has returned its message. The
 * whole path: A's request committing the local transaction record with the m.direct_to_device
 * EDU on the federation outbox, A's sender waking and sending the transaction, B's /send
 * checking the EDU and writing 100 inboxes under its message ID record, and 100 syncs waking.
 *
 * By default A and B are real processes over HTTPS on loopback with a throwaway CA (the
 * multi-process harness of tests/federation/server_processes.ts), each on its own KV file.
 * `--in-process` runs both in this process over the in-process test network instead (no
 * sockets, no TLS, `:memory:` KV).
 *
 * Flags: --users=N (recipients, default 100), --runs=N (measured runs, default 7; the median is
 * the result), --warmup=N (default 1), --in-process.
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

const USERS = flag("users", 100);
const RUNS = flag("runs", 7);
const WARMUP = flag("warmup", 1);
const IN_PROCESS = Deno.args.includes("--in-process");
const enc = encodeURIComponent;
/** The recipients' syncs: to-device messages only, so a poll returns for its message alone. */
const FILTER = JSON.stringify({
  room: { rooms: [] },
  presence: { types: [] },
  account_data: { types: [] },
});
/** About the size of an Olm-encrypted m.room_key: base64 ciphertext. */
const CIPHERTEXT = "A".repeat(1_000);

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

/** Registers in batches, so a real server is not handed USERS registrations at once. */
async function registerMany(server: Server, prefix: string, count: number) {
  const users: RegisteredUser[] = [];
  for (let i = 0; i < count; i += 10) {
    const batch = Array.from({ length: Math.min(10, count - i) }, (_, j) => `${prefix}${i + j}`);
    users.push(...await Promise.all(batch.map((localpart) => server.register(localpart))));
  }
  return users;
}

/** WARMUP + RUNS rounds: park every recipient's long-poll, send once, wait for all of them. */
async function measure(a: Server, b: Server): Promise<number[]> {
  const alice = await a.register("alice");
  const recipients = await registerMany(b, "bob", USERS);
  const sync = (user: RegisteredUser, since: string | undefined, timeout: number) =>
    ok(
      b,
      "GET",
      `/_matrix/client/v3/sync?filter=${enc(FILTER)}&timeout=${timeout}` +
        (since === undefined ? "" : `&since=${enc(since)}`),
      { token: user.accessToken },
    );
  const since = new Map<string, string>();
  for (const user of recipients) {
    since.set(user.userId, (await sync(user, undefined, 0)).next_batch);
  }

  const times: number[] = [];
  for (let round = 0; round < WARMUP + RUNS; round++) {
    const waits = recipients.map(async (user) => {
      for (;;) {
        const response = await sync(user, since.get(user.userId), 30_000);
        since.set(user.userId, response.next_batch);
        const events: { content?: { round?: number } }[] = response.to_device?.events ?? [];
        if (events.some((e) => e.content?.round === round)) return performance.now();
      }
    });
    // Let the polls park on B first, so it is the wake-up that returns them.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const messages: Record<string, Record<string, unknown>> = {};
    for (const user of recipients) {
      messages[user.userId] = {
        [user.deviceId]: {
          round,
          algorithm: "m.olm.v1.curve25519-aes-sha2",
          ciphertext: CIPHERTEXT,
        },
      };
    }
    const sent = performance.now();
    await ok(a, "PUT", `/_matrix/client/v3/sendToDevice/m.room.encrypted/round-${round}`, {
      token: alice.accessToken,
      body: { messages },
    });
    const delivered = Math.max(...await Promise.all(waits));
    if (round >= WARMUP) times.push(delivered - sent);
  }
  return times;
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
console.log(
  `Federation to-device, ${mode}: /sendToDevice to ${USERS} users on the other server, ` +
    `${RUNS} runs after ${WARMUP} warm-up`,
);
const started = performance.now();
const times = (IN_PROCESS ? await inProcess() : await processes()).sort((x, y) => x - y);
const ms = (v: number) => v.toFixed(1);
const median = times[Math.floor((times.length - 1) / 2)];
console.log();
console.log(markdownTable(["metric", "unit", "value"], [
  [`sendToDevice on A -> all ${USERS} syncs on B returned it, median`, "ms", ms(median)],
  ["min / max", "ms", `${ms(times[0])} / ${ms(times[times.length - 1])}`],
]));
console.log();
console.log(
  `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s, load average ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    }`,
);
