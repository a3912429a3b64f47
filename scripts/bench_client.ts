/**
 * `deno task bench:client`: the Client-Server API benchmark. Starts the real server (main.ts)
 * as a child process on a file-backed KV in a temp dir and drives it over real HTTP, measuring
 * send throughput, delivery latency under 1,000 other long-polls, initial and incremental sync
 * times and the server's resident memory, against the issue's targets and Synapse 1.67.
 *
 * Flags: --quick (smoke run), --runs=N (throughput runs), --pollers=N (other long-polls),
 * --poller-presence=offline (their set_presence), --latency-sends=N, --latency-runs=N,
 * --sync-repeats=N, --phases=send,sync,latency, --json=PATH (write this run's figures),
 * --combine A.json B.json ... (print the medians of several runs), --cpu-prof=DIR (profile the
 * server, written when it stops; summarise with scripts/bench_cpu_profile.ts),
 * --server-flags="..." (more `deno run` flags for the server, e.g.
 * --v8-flags=--max-semi-space-size=1), --dir=PATH (where the KV file goes), --verbose (show the
 * server's output).
 */
import { mapLimited } from "../domain/concurrency.ts";
import { BenchClient, HttpError, type SyncBody, syncHasBody } from "./bench_client_api.ts";
import {
  commandOf,
  cpuSeconds,
  freePort,
  memoryOf,
  RssSampler,
  type ServerProcess,
  sleep,
  socketCount,
  startServer,
} from "./bench_client_server.ts";
import {
  combineRuns,
  formatFigure,
  percentile,
  RATIO_NOTE,
  resultsTable,
  runMedians,
  type Samples,
} from "./bench_client_report.ts";

type Phase = "send" | "sync" | "latency";

interface Options {
  quick: boolean;
  runs: number;
  seqMessages: number;
  concMessages: number;
  clients: number;
  pollers: number;
  /** `set_presence` of the other long-polls ("offline" keeps them out of presence). */
  pollerPresence?: string;
  latencySends: number;
  latencyRuns: number;
  syncRepeats: number;
  syncSets: { rooms: number; messages: number; id: "sync50" | "sync200" }[];
  phases: Set<Phase>;
  json?: string;
  cpuProfDir?: string;
  serverFlags: string[];
  dir?: string;
  verbose: boolean;
}

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const value = (name: string) => {
    const arg = args.find((a) => a.startsWith(`--${name}=`));
    return arg?.slice(name.length + 3);
  };
  const int = (name: string, fallback: number) => {
    const raw = value(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} needs a whole number`);
    return n;
  };
  const phases = new Set(
    (value("phases") ?? "send,sync,latency").split(",").map((p) => p.trim()) as Phase[],
  );
  return {
    quick,
    runs: int("runs", quick ? 1 : 5),
    seqMessages: int("seq-messages", quick ? 50 : 300),
    concMessages: int("conc-messages", quick ? 10 : 60),
    clients: 16,
    pollers: int("pollers", quick ? 50 : 1000),
    pollerPresence: value("poller-presence"),
    latencySends: int("latency-sends", quick ? 30 : 200),
    latencyRuns: int("latency-runs", quick ? 1 : 3),
    syncRepeats: int("sync-repeats", quick ? 2 : 5),
    syncSets: quick
      ? [{ rooms: 10, messages: 10, id: "sync50" }, { rooms: 20, messages: 10, id: "sync200" }]
      : [{ rooms: 50, messages: 10, id: "sync50" }, { rooms: 200, messages: 50, id: "sync200" }],
    phases,
    json: value("json"),
    cpuProfDir: value("cpu-prof"),
    serverFlags: (value("server-flags") ?? "").split(" ").filter((f) => f !== ""),
    dir: value("dir"),
    verbose: args.includes("--verbose"),
  };
}

/** Shared state of one benchmark run. */
class Bench {
  readonly samples: Samples = {};
  readonly notes: string[] = [];
  /** CPU use per timed block: "server%/bench%" of one core. */
  readonly cpu: Record<string, string[]> = {};
  server!: ServerProcess;
  sampler!: RssSampler;
  #users = 0;
  #txn = 0;
  readonly #prefix = `b${Date.now().toString(36)}`;

  constructor(readonly options: Options, readonly dir: string, readonly port: number) {}

  record(id: string, ...values: number[]): void {
    (this.samples[id] ??= []).push(...values);
  }

  note(line: string): void {
    this.notes.push(line);
    console.log(`  ${line}`);
  }

  async start(): Promise<void> {
    const denoFlags = [...this.options.serverFlags];
    if (this.options.cpuProfDir) {
      denoFlags.push("--cpu-prof", `--cpu-prof-dir=${this.options.cpuProfDir}`);
    }
    this.server = await startServer({
      dir: this.dir,
      port: this.port,
      denoFlags,
      verbose: this.options.verbose,
    });
    if (this.sampler) this.sampler.follow(this.server.pid);
    else this.sampler = new RssSampler(this.server.pid);
  }

  /** A fresh user; `http` gives it its own connection pool. */
  register(http?: Deno.HttpClient): Promise<BenchClient> {
    return BenchClient.register(this.server.base, `${this.#prefix}u${this.#users++}`, http);
  }

  txn(): string {
    return `${this.#prefix}t${this.#txn++}`;
  }

  /** Idle RSS: a few samples a while after start, the median of them. */
  async idleRss(): Promise<number> {
    await sleep(2000);
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      samples.push(memoryOf(this.server.pid).rssMiB);
      await sleep(200);
    }
    return samples.sort((a, b) => a - b)[2];
  }
}

/** A dedicated connection pool per simulated client, so none queues behind another's socket. */
function httpClient(): Deno.HttpClient {
  return Deno.createHttpClient({});
}

/** Users and their pools, to close together at the end of a phase. */
async function clients(bench: Bench, n: number): Promise<BenchClient[]> {
  return await mapLimited(Array.from({ length: n }), 8, () => bench.register(httpClient()));
}

function closeAll(users: readonly BenchClient[]): void {
  for (const u of users) u.http?.close();
}

// ---- Send throughput ----

/** CPU use of the server and of this process over a timed block, as % of one core. */
async function withCpu<T>(
  bench: Bench,
  label: string,
  block: () => Promise<T>,
): Promise<T> {
  const [server0, self0, t0] = [cpuSeconds(bench.server.pid), cpuSeconds("self"), Date.now()];
  const result = await block();
  const seconds = (Date.now() - t0) / 1000;
  const server = (100 * (cpuSeconds(bench.server.pid) - server0)) / seconds;
  const self = (100 * (cpuSeconds("self") - self0)) / seconds;
  (bench.cpu[label] ??= []).push(`${server.toFixed(0)}%/${self.toFixed(0)}%`);
  return result;
}

async function sendPhase(bench: Bench): Promise<void> {
  const { options } = bench;
  console.log("send throughput");
  const users = await clients(bench, options.clients);
  const [solo] = users;
  for (let run = 0; run < options.runs; run++) {
    // (a) one client, each send awaited.
    const room = await solo.createRoom();
    let t = performance.now();
    await withCpu(bench, "sequential", async () => {
      for (let i = 0; i < options.seqMessages; i++) {
        await solo.send(room, bench.txn(), `seq ${run} ${i}`);
      }
    });
    const seq = options.seqMessages / ((performance.now() - t) / 1000);
    bench.record("send_seq", seq);

    // (b) 16 clients, each in its own room, concurrently.
    const rooms = await Promise.all(users.map((u) => u.createRoom()));
    t = performance.now();
    await withCpu(bench, "16 rooms", () =>
      Promise.all(users.map(async (u, k) => {
        for (let i = 0; i < options.concMessages; i++) {
          await u.send(rooms[k], bench.txn(), `own room ${run} ${i}`);
        }
      })));
    const many = (users.length * options.concMessages) / ((performance.now() - t) / 1000);
    bench.record("send_16_rooms", many);

    // (c) 16 clients in one room, concurrently.
    const shared = await solo.createRoom();
    await Promise.all(users.slice(1).map((u) => u.join(shared)));
    t = performance.now();
    await withCpu(bench, "one room", () =>
      Promise.all(users.map(async (u) => {
        for (let i = 0; i < options.concMessages; i++) {
          await u.send(shared, bench.txn(), `shared room ${run} ${i}`);
        }
      })));
    const one = (users.length * options.concMessages) / ((performance.now() - t) / 1000);
    bench.record("send_1_room", one);
    console.log(
      `  run ${run + 1}: sequential ${formatFigure(seq)}/s, 16 rooms ${formatFigure(many)}/s, ` +
        `one room ${formatFigure(one)}/s`,
    );
  }
  bench.record("rss_send_peak", bench.sampler.takePeak());
  for (const [label, runs] of Object.entries(bench.cpu)) {
    bench.note(`CPU server/bench (% of one core), ${label}: ${runs.join(", ")}`);
  }
  closeAll(users);
}

// ---- Sync ----

/** One timed sync: milliseconds to the whole body (parsing is outside the timing). */
async function timedSync(
  user: BenchClient,
  since?: string,
): Promise<{ ms: number; bytes: number; body: SyncBody }> {
  const query = new URLSearchParams({ timeout: "0" });
  if (since !== undefined) query.set("since", since);
  const t = performance.now();
  const res = await fetch(`${user.base}/_matrix/client/v3/sync?${query}`, {
    headers: { authorization: `Bearer ${user.session.accessToken}` },
    ...(user.http ? { client: user.http } : {}),
  });
  const text = await res.text();
  const ms = performance.now() - t;
  if (!res.ok) throw new HttpError(res.status, "GET /sync", text);
  return { ms, bytes: text.length, body: JSON.parse(text) as SyncBody };
}

function checkInitialSync(body: SyncBody, rooms: number, messages: number): void {
  const joined = Object.values(body.rooms?.join ?? {});
  if (joined.length !== rooms) throw new Error(`sync: ${joined.length} rooms, expected ${rooms}`);
  const expected = Math.min(10, messages);
  const short = joined.filter((r) => (r.timeline?.events?.length ?? 0) < expected).length;
  if (short > 0) throw new Error(`sync: ${short} rooms with fewer than ${expected} events`);
}

async function syncPhase(bench: Bench): Promise<void> {
  const { options } = bench;
  console.log("sync");
  const sets: { id: string; rooms: number; messages: number; user: BenchClient; room0: string }[] =
    [];
  for (const set of options.syncSets) {
    const user = await bench.register(httpClient());
    const t = performance.now();
    // One at a time: two createRooms by one user in the same millisecond build the same v12
    // m.room.create event, hence the same room ID (a server bug, reported; not ours to hide).
    const rooms: string[] = [];
    for (let i = 0; i < set.rooms; i++) rooms.push(await user.createRoom());
    await mapLimited(rooms, 16, async (room) => {
      for (let i = 0; i < set.messages; i++) await user.send(room, bench.txn(), `history ${i}`);
    });
    bench.note(
      `built ${set.rooms} rooms × ${set.messages} messages in ${
        ((performance.now() - t) / 1000).toFixed(1)
      } s`,
    );
    sets.push({ ...set, user, room0: rooms[0] });
  }
  // First sync in the process that wrote the data (its event caches are warm).
  for (const set of sets) {
    const first = await timedSync(set.user);
    checkInitialSync(first.body, set.rooms, set.messages);
    bench.record(`${set.id}_first_warm`, first.ms);
  }
  const sendPeak = bench.sampler.takePeak();
  bench.record("rss_send_peak", sendPeak);

  // Restart on the same KV: the first sync then reads everything from the KV file.
  await bench.server.stop();
  await bench.start();
  bench.record("rss_idle_data", await bench.idleRss());
  for (const set of sets) {
    const first = await timedSync(set.user);
    checkInitialSync(first.body, set.rooms, set.messages);
    bench.record(`${set.id}_first`, first.ms);
    for (let i = 0; i < options.syncRepeats; i++) {
      const again = await timedSync(set.user);
      checkInitialSync(again.body, set.rooms, set.messages);
      bench.record(`${set.id}_repeat`, again.ms);
    }
    bench.note(
      `${set.id}: initial sync body ${(first.bytes / 1024).toFixed(0)} KiB; first ${
        first.ms.toFixed(1)
      } ms, repeats ${bench.samples[`${set.id}_repeat`].map((ms) => ms.toFixed(1)).join(", ")} ms`,
    );
  }

  // Incremental: one new message in one room since a recent token.
  const small = sets[0];
  for (let i = 0; i < options.syncRepeats; i++) {
    const { body } = await timedSync(small.user, undefined);
    const text = `incremental ${i}`;
    await small.user.send(small.room0, bench.txn(), text);
    const next = await timedSync(small.user, body.next_batch);
    const rooms = Object.keys(next.body.rooms?.join ?? {});
    if (rooms.length !== 1 || !syncHasBody(next.body, small.room0, text)) {
      throw new Error(`incremental sync: expected the one message in one room, got ${rooms}`);
    }
    bench.record("sync50_incremental", next.ms);
  }
  bench.record("rss_sync_peak", bench.sampler.takePeak());
  closeAll(sets.map((s) => s.user));
}

// ---- Delivery latency under many long-polls ----

/** Other users each holding a long-poll open, re-polling whenever one returns. */
class Pollers {
  readonly #abort = new AbortController();
  readonly #loops: Promise<void>[] = [];
  readonly #pools: Deno.HttpClient[] = [];
  parked = 0;
  repolls = 0;
  errors = 0;

  /** Register `n` users and start their loops; resolves when every one has a long-poll out. */
  async start(bench: Bench, n: number): Promise<void> {
    // 50 users per pool: Deno's fetch opens a connection per request in flight anyway; the
    // pools only keep any one pool's bookkeeping small.
    for (let i = 0; i < Math.ceil(n / 50); i++) this.#pools.push(httpClient());
    const users = await mapLimited(
      Array.from({ length: n }),
      16,
      (_, i) => bench.register(this.#pools[Math.floor(i / 50)]),
    );
    const rss = () => `${memoryOf(bench.server.pid).rssMiB.toFixed(0)} MiB`;
    bench.note(`server RSS after registering ${n} users: ${rss()}`);
    const presence = bench.options.pollerPresence;
    const tokens = await mapLimited(
      users,
      16,
      async (u) => (await u.sync({ presence })).next_batch,
    );
    bench.note(`server RSS after their initial syncs: ${rss()}`);
    const signal = this.#abort.signal;
    users.forEach((user, i) => {
      this.#loops.push((async () => {
        let since = tokens[i];
        // Spread the first timeouts so re-polls arrive steadily, as real clients' do.
        let timeoutMs = 1000 + Math.floor(Math.random() * 29_000);
        let first = true;
        while (!signal.aborted) {
          try {
            const pending = user.sync({ since, timeoutMs, signal, presence });
            if (first) this.parked++;
            first = false;
            since = (await pending).next_batch;
            this.repolls++;
          } catch (error) {
            if (signal.aborted) return;
            this.errors++;
            if (this.errors <= 3) console.warn("  poller:", String(error));
            await sleep(100);
          }
          timeoutMs = 30_000;
        }
      })());
    });
    while (this.parked < n) await sleep(20);
    await sleep(1000); // let the last long-polls reach their wait
    bench.note(`server RSS with their long-polls parked: ${rss()}`);
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all(this.#loops);
    for (const pool of this.#pools) pool.close();
  }
}

async function latencyPhase(bench: Bench): Promise<void> {
  const { options } = bench;
  console.log(`delivery latency with ${options.pollers} other long-polls`);
  const pollers = new Pollers();
  const t = performance.now();
  await pollers.start(bench, options.pollers);
  const serverSockets = socketCount(bench.server.pid);
  const ourSockets = socketCount("self");
  bench.note(
    `${options.pollers} pollers up in ${((performance.now() - t) / 1000).toFixed(1)} s; ` +
      `sockets: server ${serverSockets}, bench ${ourSockets}`,
  );
  if (serverSockets < options.pollers) {
    bench.note(`WARNING: fewer server sockets than long-polls: requests are queued client-side`);
  }

  const [sender, receiver] = [
    await bench.register(httpClient()),
    await bench.register(httpClient()),
  ];
  const room = await sender.createRoom();
  await receiver.join(room);
  let since = (await receiver.sync()).next_batch;
  const deliver = async (text: string): Promise<number> => {
    const poll = (async () => {
      let s = since;
      for (;;) {
        const body = await receiver.sync({ since: s, timeoutMs: 30_000 });
        const at = performance.now();
        s = body.next_batch;
        if (syncHasBody(body, room, text)) return { at, next: s };
      }
    })();
    await sleep(10); // the long-poll is parked on the server by now
    const sentAt = performance.now();
    await sender.send(room, bench.txn(), text);
    sendMs.push(performance.now() - sentAt);
    const { at, next } = await poll;
    since = next;
    return at - sentAt;
  };
  const sendMs: number[] = [];
  for (let i = 0; i < 10; i++) await deliver(`warm-up ${i}`);
  const repollsBefore = pollers.repolls;
  const phaseStart = performance.now();
  for (let run = 0; run < options.latencyRuns; run++) {
    const latencies: number[] = [];
    for (let i = 0; i < options.latencySends; i++) {
      latencies.push(await deliver(`latency ${run} ${i}`));
    }
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    bench.record("delivery_p50", p50);
    bench.record("delivery_p99", p99);
    console.log(
      `  run ${run + 1}: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${
        Math.max(...latencies).toFixed(1)
      } ms over ${latencies.length} sends`,
    );
  }
  const seconds = (performance.now() - phaseStart) / 1000;
  bench.note(
    `the sender's PUT answered in p50 ${percentile(sendMs, 50).toFixed(2)} ms, p99 ${
      percentile(sendMs, 99).toFixed(2)
    } ms (delivery can beat it: the long-poll wakes at the commit)`,
  );
  bench.record("rss_polls_peak", bench.sampler.takePeak());
  bench.note(
    `other long-polls re-polled ${pollers.repolls - repollsBefore} times in ${
      seconds.toFixed(1)
    } s; poll errors ${pollers.errors}; server sockets at the end ${socketCount(bench.server.pid)}`,
  );
  await pollers.stop();
  closeAll([sender, receiver]);
}

// ---- Context: what the disk allows right now ----

/**
 * Raw `kv.set` rates on a file KV beside the server's (one disk sync per commit), so a send
 * rate can be read against what the disk gave in the same run: on a busy shared machine the
 * disk, not the server, is often the limit.
 */
async function kvCeiling(bench: Bench): Promise<void> {
  const kv = await Deno.openKv(`${bench.dir}/ceiling.kv`);
  const value = "x".repeat(400);
  const n = bench.options.quick ? 100 : 300;
  try {
    for (let round = 0; round < (bench.options.quick ? 1 : 3); round++) {
      let t = performance.now();
      for (let i = 0; i < n; i++) await kv.set(["seq", round, i], value);
      bench.record("kv_seq", n / ((performance.now() - t) / 1000));
      t = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < n * 2) await kv.set(["conc", round, next++], value);
      }));
      bench.record("kv_conc", (n * 2) / ((performance.now() - t) / 1000));
    }
  } finally {
    kv.close();
  }
}

// ---- Main ----

async function combine(paths: readonly string[]): Promise<void> {
  const runs = await Promise.all(
    paths.map(async (p) => JSON.parse(await Deno.readTextFile(p)).medians),
  );
  console.log(`\nMedians across ${runs.length} runs (min–max of the runs' medians):\n`);
  console.log(resultsTable(combineRuns(runs), "Tessera median of runs (min–max)"));
  console.log(`\n${RATIO_NOTE}`);
}

async function main(): Promise<void> {
  const args = Deno.args;
  const at = args.indexOf("--combine");
  if (at >= 0) return await combine(args.slice(at + 1));

  const options = parseOptions(args);
  const dir = options.dir ?? (await Deno.makeTempDir({ prefix: "tessera-bench-client-" }));
  if (options.cpuProfDir) await Deno.mkdir(options.cpuProfDir, { recursive: true });
  const bench = new Bench(options, dir, freePort());
  const started = performance.now();
  const load = () => Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`Client-Server API benchmark${options.quick ? " (quick)" : ""}; load ${load()}`);
  try {
    await kvCeiling(bench);
    await bench.start();
    bench.note(
      `server pid ${bench.server.pid} (${commandOf(bench.server.pid)}), KV file in ${dir}`,
    );
    bench.record("rss_idle", await bench.idleRss());
    bench.sampler.takePeak();
    if (options.phases.has("send")) await sendPhase(bench);
    if (options.phases.has("sync")) await syncPhase(bench);
    if (options.phases.has("latency")) await latencyPhase(bench);
    bench.note(`server RSS high-water mark ${memoryOf(bench.server.pid).hwmMiB.toFixed(1)} MiB`);
  } finally {
    await bench.server?.stop();
    bench.sampler?.stop();
    if (!options.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `\nDeno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ${
      seconds.toFixed(0)
    } s, load average at the end ${load()}\n`,
  );
  console.log(resultsTable(bench.samples));
  console.log(`\n${RATIO_NOTE}`);
  console.log(
    `Workload: ${options.pollers} other long-polls; initial sync sets ${
      options.syncSets.map((s) => `${s.rooms} rooms × ${s.messages}`).join(" and ")
    }${options.quick ? " (--quick: smaller than the labels say)" : ""}.`,
  );
  if (options.json) {
    await Deno.writeTextFile(
      options.json,
      JSON.stringify(
        {
          at: new Date().toISOString(),
          seconds,
          notes: bench.notes,
          samples: bench.samples,
          medians: runMedians(bench.samples),
        },
        null,
        2,
      ),
    );
  }
}

if (import.meta.main) await main();
