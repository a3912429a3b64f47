/**
 * `deno task bench:federation-edus`: the delay from a key change of a user on server A until a
 * /sync long-poll of a user on server B who shares a room with her returns her in
 * `device_lists.changed`. The whole path is measured: A's /keys/upload commit with the
 * device-list log entry, A queueing `m.device_list_update` for B and its sender sending the
 * transaction over HTTPS, B's /send handing the EDU to its device-list handler, which caches the
 * device and writes the change for B's users sharing a room with her, and B's sync waking.
 *
 * By default A and B are real processes over HTTPS on loopback with a throwaway CA
 * (tests/federation/server_processes.ts), each on its own KV file. `--in-process` runs both in
 * this process over the in-process test network instead (no sockets, no TLS, `:memory:` KV).
 *
 * Setup (not measured): Alice (on A) creates a room, Bob (on B) joins it, Alice logs in
 * RUNS + WARMUP devices without keys, and Bob's sync is drained of what that changed. Each round
 * then parks Bob's long-poll, uploads the self-signed device keys of one of those devices (a
 * first upload: a real key change, as a new client's) and waits for the poll to name Alice.
 *
 * Flags: --runs=N (measured rounds, default 20), --warmup=N (default 2), --in-process.
 */
import { loginUser, type RegisteredUser, registerUser } from "../tests/routes/client_harness.ts";
import { newTestDevice } from "../tests/domain/e2ee/device_keys_fixture.ts";
import { markdownTable, quantile, summarise } from "./bench_stats.ts";
import {
  type BenchServer,
  environmentLine,
  IN_PROCESS,
  numberFlag,
  ok,
  onTwoServers,
  sharedPublicRoom,
  syncOnce,
  twoServersMode,
} from "./bench_two_servers.ts";

const RUNS = numberFlag("runs", 20);
const WARMUP = numberFlag("warmup", 2);
const PASSWORD = "bench password";
/** A round that never shows the change fails the benchmark after this long. */
const ROUND_DEADLINE_MS = 30_000;
/** Bob's sync: device lists only (everything else filtered out). */
const FILTER = JSON.stringify({
  room: {
    timeline: { limit: 1, types: [] },
    state: { types: [] },
    ephemeral: { types: [] },
    account_data: { types: [] },
  },
  presence: { types: [] },
  account_data: { types: [] },
});

/** Set up, then RUNS + WARMUP rounds of key-upload-on-A, long-poll-names-her-on-B. */
async function measure(a: BenchServer, b: BenchServer): Promise<number[]> {
  const alice = await registerUser(a, "alice", PASSWORD);
  const bob = await registerUser(b, "bob");
  await sharedPublicRoom(a, alice, b, bob);
  const devices: RegisteredUser[] = [];
  for (let i = 0; i < RUNS + WARMUP; i++) devices.push(await loginUser(a, "alice", PASSWORD));

  const deviceKeys = await Promise.all(
    devices.map((d) => newTestDevice(d.userId, d.deviceId)),
  );
  const sync = (since: string | undefined, timeout: number) =>
    syncOnce(b, bob, FILTER, since, timeout);
  const namesAlice = (response: { device_lists?: { changed?: string[] } }) =>
    response.device_lists?.changed?.includes(alice.userId) ?? false;
  // Drain what the join and the logins changed: until a 3 s poll passes without Alice.
  let since: string = (await sync(undefined, 0)).next_batch;
  for (;;) {
    const response = await sync(since, 3_000);
    since = response.next_batch;
    if (!namesAlice(response)) break;
  }

  const delays: number[] = [];
  for (let round = 0; round < WARMUP + RUNS; round++) {
    const device = devices[round];
    const deadline = Date.now() + ROUND_DEADLINE_MS;
    const seen = (async () => {
      while (Date.now() < deadline) {
        const response = await sync(since, Math.max(0, deadline - Date.now()));
        since = response.next_batch;
        if (namesAlice(response)) return performance.now();
      }
      throw new Error(
        `round ${round}: ${b.name}'s sync never listed ${alice.userId} in device_lists.changed ` +
          `within ${ROUND_DEADLINE_MS} ms of her key upload on ${a.name}`,
      );
    })();
    // Let the poll park on B first, so it is the wake-up that returns it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const body = { device_keys: await deviceKeys[round].deviceKeys() };
    const changed = performance.now();
    await ok(a, "POST", "/_matrix/client/v3/keys/upload", {
      token: device.accessToken,
      body,
    });
    const returned = await seen;
    if (round >= WARMUP) delays.push(returned - changed);
  }
  return delays;
}

console.log(
  `Device-list latency across servers, ${
    twoServersMode(IN_PROCESS)
  }: ${RUNS} key uploads after ${WARMUP} warm-up`,
);
const started = performance.now();
const delays = (await onTwoServers(IN_PROCESS, measure)).sort((x, y) => x - y);
const ms = (v: number) => v.toFixed(1);
console.log();
console.log(markdownTable(["metric", "unit", "value"], [
  [
    "key upload on A -> B's long-poll lists her in device_lists.changed, median",
    "ms",
    ms(
      summarise(delays).median,
    ),
  ],
  [
    "key upload on A -> B's long-poll lists her in device_lists.changed, p90",
    "ms",
    ms(
      quantile(delays, 0.9),
    ),
  ],
  ["min / max", "ms", `${ms(delays[0])} / ${ms(delays[delays.length - 1])}`],
]));
console.log();
console.log(environmentLine(started));
