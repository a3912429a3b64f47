/**
 * `deno task bench:sliding-sync`: simplified sliding sync (MSC4186) for an account in 1,000
 * rooms, beside the same account through /sync. Starts the real server (main.ts) as a child
 * process on a file-backed KV and drives it over loopback HTTP, as a phone would talk to it.
 *
 * Sliding sync: a list of the first 20 rooms by recency (`timeline_limit` 1, four
 * `required_state` pairs as a room list shows them), timed for
 *   - the first request of a new connection (no `pos`): the room list in one round trip; the
 *     issue's target is 50 ms;
 *   - an incremental request (`pos` of the previous answer, `timeout=0`) after one new message
 *     in one room, which bumps that room to the top of the list.
 * /sync, for comparison: an initial sync (no `since`, a filter with timeline limit 1 and lazy
 * members, the nearest like-for-like) and an incremental sync after one new message.
 *
 * Each figure is the median of several runs (and min–max). Each API's first request in a freshly
 * started process (nothing in its caches, everything read from the KV file) is measured apart,
 * a restart before each.
 *
 * Flags: --rooms=N (default 1000), --runs=N (default 7), --cold-runs=N (fresh-process runs,
 * default 3), --quick (100 rooms, 3 runs, 1 fresh-process run),
 * --json=PATH (write the medians), --verbose (show the server's output).
 */
import { BenchClient, HttpError, type SyncBody, syncHasBody } from "./bench_client_api.ts";
import { freePort, startServer } from "./bench_client_server.ts";
import { formatFigure, percentile } from "./bench_client_report.ts";

const SLIDING_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const TARGET_FIRST_MS = 50;
const LIST_SIZE = 20;

interface Options {
  rooms: number;
  runs: number;
  /** Fresh-process runs: each API's first request after a restart. */
  coldRuns: number;
  json?: string;
  verbose: boolean;
}

function parseOptions(args: readonly string[]): Options {
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const quick = args.includes("--quick");
  const options: Options = {
    rooms: Number(flag("rooms") ?? (quick ? 100 : 1000)),
    runs: Number(flag("runs") ?? (quick ? 3 : 7)),
    coldRuns: Number(flag("cold-runs") ?? (quick ? 1 : 3)),
    json: flag("json"),
    verbose: args.includes("--verbose"),
  };
  if (!Number.isInteger(options.rooms) || options.rooms < LIST_SIZE) {
    throw new Error(`--rooms must be an integer of at least ${LIST_SIZE}`);
  }
  for (const [name, value] of [["runs", options.runs], ["cold-runs", options.coldRuns]]) {
    if (!Number.isInteger(value) || Number(value) < 1) {
      throw new Error(`--${name} must be a positive integer`);
    }
  }
  return options;
}

/** The parts of a sliding sync answer the benchmark checks. */
interface SlidingBody {
  pos: string;
  lists?: Record<string, { count?: number }>;
  rooms?: Record<
    string,
    { initial?: boolean; timeline?: { event_id?: string; content?: { body?: unknown } }[] }
  >;
}

/** The list a room list screen asks for: the newest 20, one event each, name/avatar/encryption. */
function listRequest(connId: string): Record<string, unknown> {
  return {
    conn_id: connId,
    lists: {
      all: {
        ranges: [[0, LIST_SIZE - 1]],
        timeline_limit: 1,
        required_state: [
          ["m.room.name", ""],
          ["m.room.avatar", ""],
          ["m.room.encryption", ""],
          ["m.room.member", "$ME"],
        ],
      },
    },
  };
}

/** One timed request: milliseconds until the whole body is read (parsing is not timed). */
async function timed<T>(
  user: BenchClient,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ ms: number; bytes: number; body: T }> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${user.session.accessToken}`,
  };
  if (body !== undefined) headers["content-type"] = "application/json";
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const t = performance.now();
  const res = await fetch(`${user.base}${path}`, { method, headers, body: payload });
  const text = await res.text();
  const ms = performance.now() - t;
  if (!res.ok) throw new HttpError(res.status, `${method} ${path.split("?")[0]}`, text);
  return { ms, bytes: text.length, body: JSON.parse(text) as T };
}

function slidingSync(user: BenchClient, connId: string, pos?: string) {
  const query = new URLSearchParams({ timeout: "0" });
  if (pos !== undefined) query.set("pos", pos);
  return timed<SlidingBody>(user, "POST", `${SLIDING_PATH}?${query}`, listRequest(connId));
}

function sync(user: BenchClient, filter: string, since?: string) {
  const query = new URLSearchParams({ timeout: "0", filter });
  if (since !== undefined) query.set("since", since);
  return timed<SyncBody>(user, "GET", `/_matrix/client/v3/sync?${query}`);
}

/** The first answer of a connection: the account's room count and the newest 20 rooms. */
function checkFirst(body: SlidingBody, rooms: number, newest: string): void {
  const count = body.lists?.all?.count;
  if (count !== rooms) throw new Error(`sliding sync: list count ${count}, expected ${rooms}`);
  const sent = Object.keys(body.rooms ?? {});
  if (sent.length !== LIST_SIZE) {
    throw new Error(`sliding sync: ${sent.length} rooms, expected ${LIST_SIZE}`);
  }
  if (!sent.includes(newest)) throw new Error(`sliding sync: the newest room ${newest} missing`);
  if (typeof body.pos !== "string") throw new Error("sliding sync: no pos");
}

function checkInitialSync(body: SyncBody, rooms: number): void {
  const joined = Object.keys(body.rooms?.join ?? {}).length;
  if (joined !== rooms) throw new Error(`/sync: ${joined} rooms, expected ${rooms}`);
}

interface Figure {
  id: string;
  label: string;
  samples: number[];
}

function summary(f: Figure): string {
  const median = percentile(f.samples, 50);
  const min = Math.min(...f.samples);
  const max = Math.max(...f.samples);
  const spread = f.samples.length > 1 ? ` (${formatFigure(min)}–${formatFigure(max)})` : "";
  return `${formatFigure(median)} ms${spread}`;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const dir = await Deno.makeTempDir({ prefix: "tessera-sliding-bench-" });
  const port = freePort();
  let server = await startServer({ dir, port, verbose: options.verbose });
  const figures: Figure[] = [];
  const record = (id: string, label: string, ms: number) => {
    let f = figures.find((x) => x.id === id);
    if (!f) figures.push(f = { id, label, samples: [] });
    f.samples.push(ms);
  };
  try {
    const user = await BenchClient.register(server.base, `bench${Date.now()}`);
    const t = performance.now();
    // One at a time: creation order is then recency order, and one user's two createRooms in
    // the same millisecond could build the same v12 create event (same room ID).
    const rooms: string[] = [];
    for (let i = 0; i < options.rooms; i++) rooms.push(await user.createRoom(`Room ${i}`));
    console.log(
      `built ${options.rooms} rooms in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    let newest = rooms[rooms.length - 1];
    const filter = JSON.stringify({
      room: { timeline: { limit: 1 }, state: { lazy_load_members: true } },
    });

    // Each API's first request in a freshly started process on the same KV (its caches empty,
    // everything read from the KV file), after one whoami so that the process's first-request
    // costs (token lookup, HTTP stack) are not charged to either.
    const fresh = async () => {
      await server.stop();
      server = await startServer({ dir, port, verbose: options.verbose });
      const client = new BenchClient(server.base, user.session);
      await timed(client, "GET", "/_matrix/client/v3/account/whoami");
      return client;
    };
    let bytes = { sliding: 0, sync: 0 };
    for (let run = 0; run < options.coldRuns; run++) {
      const cold = await slidingSync(await fresh(), `cold-${run}`);
      checkFirst(cold.body, options.rooms, newest);
      record("sliding_first_cold", "sliding sync, first request in a fresh process", cold.ms);
      const coldSync = await sync(await fresh(), filter);
      checkInitialSync(coldSync.body, options.rooms);
      record("sync_initial_cold", "/sync initial, first request in a fresh process", coldSync.ms);
      bytes = { sliding: cold.bytes, sync: coldSync.bytes };
    }
    console.log(
      `answer sizes: sliding sync ${(bytes.sliding / 1024).toFixed(1)} KiB, /sync ${
        (bytes.sync / 1024).toFixed(0)
      } KiB`,
    );
    const client = new BenchClient(server.base, user.session);

    let txn = 0;
    for (let run = 0; run < options.runs; run++) {
      // A new connection each run: no pos, a conn_id never used.
      const first = await slidingSync(client, `run-${run}`);
      checkFirst(first.body, options.rooms, newest);
      record("sliding_first", "sliding sync, first request (new connection)", first.ms);

      // One new message in a room far down the list: it comes to the top.
      const target = rooms[run % (options.rooms - LIST_SIZE)];
      const text = `incremental ${run}`;
      await client.send(target, `t${txn++}`, text);
      newest = target;
      const next = await slidingSync(client, `run-${run}`, first.body.pos);
      const entry = next.body.rooms?.[target];
      if (!entry?.timeline?.some((e) => e.content?.body === text)) {
        throw new Error(`sliding sync incremental: the new message in ${target} is missing`);
      }
      record("sliding_incremental", "sliding sync, incremental (1 new message)", next.ms);

      const initial = await sync(client, filter);
      checkInitialSync(initial.body, options.rooms);
      record("sync_initial", "/sync initial (timeline limit 1, lazy members)", initial.ms);
      const syncText = `sync incremental ${run}`;
      await client.send(target, `t${txn++}`, syncText);
      const inc = await sync(client, filter, initial.body.next_batch);
      if (!syncHasBody(inc.body, target, syncText)) {
        throw new Error(`/sync incremental: the new message in ${target} is missing`);
      }
      record("sync_incremental", "/sync incremental (1 new message)", inc.ms);
    }

    console.log(
      `\n${options.rooms} rooms, list of the first ${LIST_SIZE}; median (min–max) of ` +
        `${options.runs} runs, ${options.coldRuns} for the fresh-process lines:`,
    );
    const width = Math.max(...figures.map((f) => f.label.length));
    for (const f of figures) console.log(`  ${f.label.padEnd(width)}  ${summary(f)}`);
    const median = (id: string) => percentile(figures.find((f) => f.id === id)!.samples, 50);
    const verdict = (ms: number) =>
      `${formatFigure(ms)} ms (${ms <= TARGET_FIRST_MS ? "met" : "NOT met"})`;
    console.log(
      `\nfirst request against the ${TARGET_FIRST_MS} ms target: ${
        verdict(median("sliding_first"))
      } in a running server, ${verdict(median("sliding_first_cold"))} in a fresh process; ` +
        `/sync's initial sync takes ${
          formatFigure(median("sync_initial") / median("sliding_first"))
        }x as long`,
    );
    if (options.json) {
      const medians = Object.fromEntries(figures.map((f) => [f.id, percentile(f.samples, 50)]));
      await Deno.writeTextFile(
        options.json,
        JSON.stringify(
          { rooms: options.rooms, runs: options.runs, coldRuns: options.coldRuns, medians },
          null,
          2,
        ),
      );
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
