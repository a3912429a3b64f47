/**
 * `deno task bench`: append throughput of the KV event store, on a file-backed KV (one disk
 * sync per commit) and on `:memory:`, each figure beside a raw `kv.set` ceiling measured in the
 * same run on the same kind of KV.
 *
 * Flags: --quick (one short run), --runs=N, --file-events=N, --memory-events=N, --rooms=N,
 * --concurrency=N, --version=V (room version), --dir=PATH (where file KVs go; default a temp dir).
 */
import { LocalEventSender } from "../domain/local_event_sender.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { type SigningKey, signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import {
  BENCH_SERVER,
  BENCH_USER,
  createBenchRoom,
  meanPduBytes,
  messageContent,
  type PreparedRoom,
  prepareRooms,
} from "./bench_rooms.ts";
import {
  formatRate,
  formatRatio,
  formatSummary,
  markdownTable,
  type RateSummary,
  summarise,
} from "./bench_stats.ts";

/** Which kind of KV a measurement runs on. */
type KvKind = "file" | "memory";

/** Which raw ceiling a scenario is compared with. */
type Ceiling = "raw_seq" | "raw_conc";

interface Options {
  quick: boolean;
  runs: number;
  events: Record<KvKind, number>;
  rooms: number;
  concurrency: number;
  version: string;
  dir?: string;
}

/** One timed measurement: how many events (or sets) in how long, over how many commits. */
interface Measurement {
  events: number;
  seconds: number;
  commits: number;
}

/** What every scenario gets: a fresh KV of the run's kind and the pre-built rooms. */
interface RunContext {
  kv: Deno.Kv;
  events: number;
  options: Options;
  signingKey: SigningKey;
  oneRoom: PreparedRoom;
  manyRooms: PreparedRoom[];
}

interface Scenario {
  id: string;
  label: string;
  /** The raw ceiling this scenario is read against; none for the ceilings themselves. */
  ceiling?: Ceiling;
  run(ctx: RunContext): Promise<Measurement>;
}

const RAW_VALUE_BYTES = 400;

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const options: Options = {
    quick,
    runs: quick ? 1 : 5,
    events: quick ? { file: 150, memory: 600 } : { file: 1000, memory: 4000 },
    rooms: 16,
    concurrency: 16,
    version: "10",
  };
  for (const arg of args) {
    const [name, value] = arg.split("=", 2);
    const int = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${name} needs a positive integer`);
      return n;
    };
    if (name === "--quick") continue;
    else if (name === "--runs") options.runs = int();
    else if (name === "--file-events") options.events.file = int();
    else if (name === "--memory-events") options.events.memory = int();
    else if (name === "--rooms") options.rooms = int();
    else if (name === "--concurrency") options.concurrency = int();
    else if (name === "--version" && value) options.version = value;
    else if (name === "--dir" && value) options.dir = value;
    else if (name === "--help") {
      console.log(
        "usage: deno task bench [--quick] [--runs=N] [--file-events=N] [--memory-events=N] " +
          "[--rooms=N] [--concurrency=N] [--version=V] [--dir=PATH]",
      );
      Deno.exit(0);
    } else throw new Error(`unknown flag ${arg}`);
  }
  return options;
}

/** Time `body`, counting the store's commits while it runs. */
async function timed(
  store: KvEventStore | null,
  events: number,
  body: () => Promise<void>,
): Promise<Measurement> {
  let commits = 0;
  const stop = store?.onRoomAppended(() => commits++);
  const start = performance.now();
  await body();
  const seconds = (performance.now() - start) / 1000;
  stop?.();
  return { events, seconds, commits: store ? commits : events };
}

/** Run `workers` loops that each take the next index from a shared cursor until `count`. */
async function pool(
  workers: number,
  count: number,
  step: (index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(workers, count) }, async () => {
    // Indexes are taken in the order callers become free, and the store queues a room's
    // appends in arrival order, so a pre-built linear chain still lands in chain order.
    while (next < count) await step(next++);
  }));
}

function newStore(kv: Deno.Kv): KvEventStore {
  return new KvEventStore(kv, { resolver: resolveState });
}

async function appendSetup(store: KvEventStore, room: PreparedRoom): Promise<void> {
  await store.append({ roomId: room.roomId, roomVersion: room.version, events: room.setup });
}

function rawValue(): Uint8Array {
  const value = new Uint8Array(RAW_VALUE_BYTES);
  // Random bytes, so no layer below can shortcut a run of identical values.
  crypto.getRandomValues(value);
  return value;
}

function appendOne(store: KvEventStore, room: PreparedRoom, event: NewEvent) {
  return store.append({ roomId: room.roomId, events: [event] });
}

function sendMessage(sender: LocalEventSender, roomId: string, n: number) {
  return sender.send({
    roomId,
    sender: BENCH_USER,
    type: "m.room.message",
    content: messageContent(n),
  });
}

const SCENARIOS: Scenario[] = [
  {
    id: "raw_seq",
    label: "raw kv.set, sequential",
    run: ({ kv, events }) => {
      const value = rawValue();
      return timed(null, events, async () => {
        for (let i = 0; i < events; i++) await kv.set(["bench_raw", i], value);
      });
    },
  },
  {
    id: "raw_conc",
    label: "raw kv.set, concurrent",
    run: ({ kv, events, options }) => {
      const value = rawValue();
      return timed(
        null,
        events,
        () => pool(options.concurrency, events, (i) => kv.set(["bench_raw", i], value)),
      );
    },
  },
  {
    id: "one_seq",
    label: "one room, sequential appends",
    ceiling: "raw_seq",
    run: async ({ kv, events, oneRoom }) => {
      const store = newStore(kv);
      await appendSetup(store, oneRoom);
      const messages = oneRoom.messages.slice(0, events);
      return await timed(store, events, async () => {
        for (const m of messages) await appendOne(store, oneRoom, m);
      });
    },
  },
  {
    id: "one_conc",
    label: "one room, concurrent appenders",
    ceiling: "raw_conc",
    run: async ({ kv, events, oneRoom, options }) => {
      const store = newStore(kv);
      await appendSetup(store, oneRoom);
      const messages = oneRoom.messages.slice(0, events);
      return await timed(
        store,
        events,
        () => pool(options.concurrency, events, (i) => appendOne(store, oneRoom, messages[i])),
      );
    },
  },
  {
    id: "many_rooms",
    label: "many rooms, one appender each",
    ceiling: "raw_conc",
    run: async ({ kv, events, manyRooms }) => {
      const store = newStore(kv);
      for (const room of manyRooms) await appendSetup(store, room);
      const perRoom = Math.floor(events / manyRooms.length);
      return await timed(store, perRoom * manyRooms.length, async () => {
        await Promise.all(manyRooms.map(async (room) => {
          for (const m of room.messages.slice(0, perRoom)) await appendOne(store, room, m);
        }));
      });
    },
  },
  {
    id: "e2e_one",
    label: "send path, one room, concurrent senders",
    ceiling: "raw_conc",
    run: async ({ kv, events, options, signingKey }) => {
      const store = newStore(kv);
      const sender = new LocalEventSender({ store, serverName: BENCH_SERVER, signingKey });
      const roomId = await createBenchRoom(sender, options.version);
      return await timed(
        store,
        events,
        () => pool(options.concurrency, events, (i) => sendMessage(sender, roomId, i)),
      );
    },
  },
  {
    id: "e2e_many",
    label: "send path, many rooms, one sender each",
    ceiling: "raw_conc",
    run: async ({ kv, events, options, signingKey }) => {
      const store = newStore(kv);
      const sender = new LocalEventSender({ store, serverName: BENCH_SERVER, signingKey });
      const roomIds: string[] = [];
      for (let r = 0; r < options.rooms; r++) {
        roomIds.push(await createBenchRoom(sender, options.version));
      }
      const perRoom = Math.floor(events / roomIds.length);
      return await timed(store, perRoom * roomIds.length, async () => {
        await Promise.all(roomIds.map(async (roomId) => {
          for (let i = 0; i < perRoom; i++) await sendMessage(sender, roomId, i);
        }));
      });
    },
  },
];

/** A fresh KV for one measurement; file KVs each get their own file, removed afterwards. */
async function withKv<T>(
  kind: KvKind,
  dir: string,
  body: (kv: Deno.Kv) => Promise<T>,
): Promise<T> {
  const path = kind === "memory" ? ":memory:" : await Deno.makeTempDir({ dir });
  const kv = await Deno.openKv(kind === "memory" ? path : `${path}/bench.kv`);
  try {
    return await body(kv);
  } finally {
    kv.close();
    if (kind === "file") await Deno.remove(path, { recursive: true });
  }
}

function scenarioLabel(s: Scenario, options: Options): string {
  if (s.id === "raw_conc") return `${s.label} (${options.concurrency} in flight)`;
  if (s.id === "one_conc" || s.id === "e2e_one") return `${s.label} (${options.concurrency})`;
  if (s.id === "many_rooms" || s.id === "e2e_many") return `${s.label} (${options.rooms} rooms)`;
  return s.label;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const began = performance.now();
  const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:bench");
  const cpu = await cpuModel();
  const revision = await gitRevision();
  console.log(`# Tessera append benchmark${options.quick ? " (quick)" : ""}`);
  console.log(
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${Deno.build.os}/${Deno.build.arch}, ` +
      `${navigator.hardwareConcurrency} CPUs${cpu ? ` (${cpu})` : ""}`,
  );
  if (revision) console.log(`Code: ${revision}`);

  const maxEvents = Math.max(options.events.file, options.events.memory);
  const buildStart = performance.now();
  const [oneRoom] = await prepareRooms({
    rooms: 1,
    messagesPerRoom: maxEvents,
    version: options.version,
    signingKey,
  });
  const manyRooms = await prepareRooms({
    rooms: options.rooms,
    messagesPerRoom: Math.ceil(maxEvents / options.rooms),
    version: options.version,
    signingKey,
  });
  console.log(
    `Room version ${options.version}; pre-built ${maxEvents * 2} signed m.room.message PDUs, ` +
      `mean ${Math.round(meanPduBytes([oneRoom]))} bytes of canonical JSON, in ` +
      `${((performance.now() - buildStart) / 1000).toFixed(1)} s; raw values ${RAW_VALUE_BYTES} B.`,
  );
  console.log(
    `${options.runs} run(s) per figure; median (min-max) events/s; ` +
      `${options.events.file} events per file-KV run, ${options.events.memory} per :memory: run.`,
  );

  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "tessera_bench_" });
  if (options.dir) await Deno.mkdir(dir, { recursive: true });
  console.log(`File KVs under ${dir}.\n`);
  const results = new Map<string, { summary: RateSummary; perCommit: number }>();
  try {
    // Warm the JIT on every code path, so the first measured run is not the slow one.
    for (const s of SCENARIOS) {
      await withKv("memory", dir, (kv) =>
        s.run({
          kv,
          events: Math.min(200, options.events.memory),
          options,
          signingKey,
          oneRoom,
          manyRooms,
        }));
    }

    for (const kind of ["file", "memory"] as const) {
      const rates = new Map<string, number[]>(SCENARIOS.map((s) => [s.id, []]));
      const commits = new Map<string, number>(SCENARIOS.map((s) => [s.id, 0]));
      const events = new Map<string, number>(SCENARIOS.map((s) => [s.id, 0]));
      for (let run = 0; run < options.runs; run++) {
        // Ceilings and store figures alternate inside each run, so drift hits both alike.
        for (const s of SCENARIOS) {
          const m = await withKv(kind, dir, (kv) =>
            s.run({
              kv,
              events: options.events[kind],
              options,
              signingKey,
              oneRoom,
              manyRooms,
            }));
          rates.get(s.id)!.push(m.events / m.seconds);
          commits.set(s.id, commits.get(s.id)! + m.commits);
          events.set(s.id, events.get(s.id)! + m.events);
        }
      }
      console.log(`## ${kind === "file" ? "file KV" : ":memory: KV"}`);
      for (const s of SCENARIOS) {
        const summary = summarise(rates.get(s.id)!);
        const perCommit = events.get(s.id)! / Math.max(1, commits.get(s.id)!);
        results.set(`${kind}/${s.id}`, { summary, perCommit });
        const ceiling = s.ceiling ? results.get(`${kind}/${s.ceiling}`)!.summary : undefined;
        const versus = ceiling
          ? ` = ${formatRatio(summary.median, ceiling.median)} ${
            s.ceiling === "raw_seq" ? "raw sequential" : "raw concurrent"
          } kv.set`
          : "";
        console.log(
          `  ${scenarioLabel(s, options).padEnd(52)} ${formatSummary(summary).padStart(24)} ev/s` +
            `${versus}${s.ceiling ? `, ${perCommit.toFixed(1)} ev/commit` : ""}`,
        );
        if (!options.quick) {
          console.log(`    runs: ${summary.runs.map(formatRate).join(", ")}`);
        }
      }
      console.log("");
    }
  } finally {
    if (!options.dir) await Deno.remove(dir, { recursive: true });
  }

  const rows: string[][] = [];
  for (const s of SCENARIOS) {
    const row = [scenarioLabel(s, options)];
    for (const kind of ["file", "memory"] as const) {
      const { summary, perCommit } = results.get(`${kind}/${s.id}`)!;
      const ceiling = s.ceiling ? results.get(`${kind}/${s.ceiling}`)!.summary : undefined;
      row.push(formatRate(summary.median));
      row.push(ceiling ? formatRatio(summary.median, ceiling.median) : "ceiling");
      row.push(s.ceiling ? perCommit.toFixed(1) : "1");
    }
    rows.push(row);
  }
  console.log(
    `Append throughput, events/s (median of ${options.runs}); "x ceiling" is the store figure ` +
      `over the raw kv.set figure of the same KV (sequential for sequential appends, concurrent ` +
      `otherwise). Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs.\n`,
  );
  console.log(markdownTable(
    [
      "scenario",
      "file ev/s",
      "file x ceiling",
      "file ev/commit",
      ":memory: ev/s",
      ":memory: x ceiling",
      ":memory: ev/commit",
    ],
    rows,
  ));
  console.log(`\nTotal time ${((performance.now() - began) / 1000).toFixed(0)} s.`);
}

/**
 * The commit measured, and whether the store's code differs from it: figures taken with a
 * dirty kv/ or domain/ are not that commit's figures.
 */
async function gitRevision(): Promise<string | undefined> {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("git", { args, stdout: "piped", stderr: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trimEnd() : undefined;
  };
  try {
    const head = await run("rev-parse", "--short", "HEAD");
    if (!head) return undefined;
    const dirty = await run("status", "--porcelain", "--", "kv", "domain");
    if (!dirty) return head;
    const files = dirty.split("\n").map((line) => line.slice(3));
    return `${head} with uncommitted changes in ${files.join(", ")}`;
  } catch {
    return undefined;
  }
}

/** The CPU model from /proc/cpuinfo on Linux; undefined elsewhere or without permission. */
async function cpuModel(): Promise<string | undefined> {
  try {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    return /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim();
  } catch {
    return undefined;
  }
}

if (import.meta.main) await main();
