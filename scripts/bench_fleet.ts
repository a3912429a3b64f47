/**
 * `deno task bench:fleet`: message delivery latency in a fleet of Tessera processes on one KV
 * file (issue 12), beside the single-process figure. Each round parks Bob's `/sync` long-poll,
 * sends one message from Alice (at a random phase of the wake poll), and times send-to-return of
 * the poll carrying it.
 *
 * Setups, each a fresh fleet of real processes (tests/fleet/fleet_harness.ts) on a KV file:
 * - one process, `TESSERA_WAKE=watch` (the in-process notifier; KV watch within the process);
 * - one process, `TESSERA_WAKE=poll`;
 * - two processes, `TESSERA_WAKE=poll`: Alice sends through A, Bob long-polls on B, so only the
 *   cross-process wake (the poll of the wake keys every `--poll-ms`) can return his poll before
 *   its timeout.
 * The target (issue 12): the cross-process p50 within one poll interval of the single-process
 * figure. Without cross-process wake-ups, the cross-process poll returns at its timeout.
 *
 * Each setup runs `--runs` times (a fresh fleet each); the report gives the median over runs of
 * each run's p50 and p99, and the ratios to the single-process (watch) figures.
 *
 * Flags: --sends=N (measured sends per run, default 50), --warmup=N (default 3), --runs=N
 * (default 3), --timeout=MS (the long-poll timeout, default 10000), --poll-ms=MS
 * (TESSERA_WAKE_POLL_MS, default 100), --only=cross (the cross-process setup alone).
 */
import { markdownTable, quantile, summarise } from "./bench_stats.ts";
import { environmentLine, numberFlag } from "./bench_two_servers.ts";
import { type FleetProcess, startFleet } from "../tests/fleet/fleet_harness.ts";
import { type RegisteredUser, registerUser } from "../tests/routes/client_harness.ts";
import type { RequestOptions } from "../tests/routes/test_server.ts";

const SENDS = numberFlag("sends", 50);
const WARMUP = numberFlag("warmup", 3);
const RUNS = numberFlag("runs", 3);
const TIMEOUT = numberFlag("timeout", 10_000);
const POLL_MS = numberFlag("poll-ms", 100);
const ONLY_CROSS = Deno.args.includes("--only=cross");
const enc = encodeURIComponent;
/** Bob's sync: the room timeline only, so a round's poll returns for its message alone. */
const FILTER = JSON.stringify({
  room: { timeline: { limit: 10 }, ephemeral: { types: [] }, account_data: { types: [] } },
  presence: { types: [] },
  account_data: { types: [] },
});

/** A client call that must answer 200 (else the benchmark fails naming it); its body. */
// deno-lint-ignore no-explicit-any
async function ok(p: FleetProcess, method: string, path: string, o: RequestOptions): Promise<any> {
  const res = await p.request(method, path, o);
  if (res.status !== 200) {
    throw new Error(
      `process ${p.index} ${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`,
    );
  }
  return res.body;
}

/**
 * Alice (through `sender`) makes a room Bob (through `receiver`) joins; then WARMUP + SENDS
 * rounds of send-through-sender, long-poll-on-receiver-returns-it. The measured delays in ms.
 */
async function measure(sender: FleetProcess, receiver: FleetProcess): Promise<number[]> {
  const alice = await registerUser(sender, "alice");
  const bob: RegisteredUser = await registerUser(receiver, "bob");
  const { room_id: roomId } = await ok(sender, "POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  await ok(receiver, "POST", `/_matrix/client/v3/join/${enc(roomId)}`, {
    token: bob.accessToken,
    body: {},
  });
  const sync = (since: string | undefined, timeout: number) =>
    ok(
      receiver,
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
        const response = await sync(since, TIMEOUT);
        since = response.next_batch;
        const events = response.rooms?.join?.[roomId]?.timeline?.events ?? [];
        if (events.some((e: { content?: { body?: string } }) => e.content?.body === body)) {
          return performance.now();
        }
      }
    })();
    // Let the poll park first, so it is the wake-up that returns it; then a random part of a
    // poll interval more, so sends fall at random phases of the poll timer (which starts when
    // the poll subscribes), as messages from real users do.
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * POLL_MS));
    const sent = performance.now();
    await ok(
      sender,
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
      { token: alice.accessToken, body: { msgtype: "m.text", body } },
    );
    const returned = await seen;
    if (round >= WARMUP) delays.push(returned - sent);
  }
  return delays;
}

interface Setup {
  name: string;
  processes: number;
  wake: "watch" | "poll";
}

const setups: Setup[] = [
  { name: "one process, watch", processes: 1, wake: "watch" },
  { name: "one process, poll", processes: 1, wake: "poll" },
  { name: "A -> B across two processes, poll", processes: 2, wake: "poll" },
].filter((s) => !ONLY_CROSS || s.processes === 2) as Setup[];

/** One run of a setup on a fresh fleet: its p50 and p99 in ms. */
async function run(setup: Setup): Promise<{ p50: number; p99: number }> {
  const fleet = await startFleet(setup.processes, {
    env: { TESSERA_WAKE: setup.wake, TESSERA_WAKE_POLL_MS: String(POLL_MS) },
  });
  try {
    const [sender] = fleet.processes;
    const receiver = fleet.processes[fleet.processes.length - 1];
    const delays = (await measure(sender, receiver)).sort((x, y) => x - y);
    return { p50: quantile(delays, 0.5), p99: quantile(delays, 0.99) };
  } catch (error) {
    console.error(fleet.output().slice(-6000));
    throw error;
  } finally {
    await fleet.stop();
  }
}

console.log(
  `Fleet delivery latency: ${SENDS} sends after ${WARMUP} warm-up, ${RUNS} runs per setup, ` +
    `/sync timeout ${TIMEOUT} ms, TESSERA_WAKE_POLL_MS=${POLL_MS}`,
);
const started = performance.now();
const results = new Map<string, { p50: number; p99: number; runs: string }>();
for (const setup of setups) {
  const p50s: number[] = [];
  const p99s: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await run(setup);
    p50s.push(r.p50);
    p99s.push(r.p99);
    console.log(
      `  ${setup.name}, run ${i + 1}: p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`,
    );
  }
  results.set(setup.name, {
    p50: summarise(p50s).median,
    p99: summarise(p99s).median,
    runs: p50s.map((v) => v.toFixed(1)).join(", "),
  });
}

const ms = (v: number) => v.toFixed(1);
const single = results.get("one process, watch");
const ratio = (v: number, base: number | undefined) =>
  base && base > 0 ? `${(v / base).toFixed(2)}x` : "—";
console.log();
console.log(markdownTable(
  ["setup", "p50 ms", "p99 ms", "p50 / one process", "p99 / one process", "p50 of each run"],
  [...results].map(([name, r]) => [
    name,
    ms(r.p50),
    ms(r.p99),
    ratio(r.p50, single?.p50),
    ratio(r.p99, single?.p99),
    r.runs,
  ]),
));
console.log();
const cross = results.get("A -> B across two processes, poll");
if (cross && single) {
  const gap = cross.p50 - single.p50;
  console.log(
    `cross-process p50 - single-process p50 = ${ms(gap)} ms: ${
      gap <= POLL_MS ? "within" : "NOT within"
    } one poll interval (${POLL_MS} ms)`,
  );
}
console.log(environmentLine(started));
