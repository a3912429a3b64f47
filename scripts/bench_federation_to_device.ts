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
import type { RegisteredUser } from "../tests/routes/client_harness.ts";
import { markdownTable } from "./bench_stats.ts";
import {
  type BenchServer,
  environmentLine,
  IN_PROCESS,
  numberFlag,
  ok,
  onTwoServers,
  syncOnce,
  twoServersMode,
} from "./bench_two_servers.ts";

const USERS = numberFlag("users", 100);
const RUNS = numberFlag("runs", 7);
const WARMUP = numberFlag("warmup", 1);
/** The recipients' syncs: to-device messages only, so a poll returns for its message alone. */
const FILTER = JSON.stringify({
  room: { rooms: [] },
  presence: { types: [] },
  account_data: { types: [] },
});
/** About the size of an Olm-encrypted m.room_key: base64 ciphertext. */
const CIPHERTEXT = "A".repeat(1_000);

/** Registers in batches, so a real server is not handed USERS registrations at once. */
async function registerMany(server: BenchServer, prefix: string, count: number) {
  const users: RegisteredUser[] = [];
  for (let i = 0; i < count; i += 10) {
    const batch = Array.from({ length: Math.min(10, count - i) }, (_, j) => `${prefix}${i + j}`);
    users.push(...await Promise.all(batch.map((localpart) => server.register(localpart))));
  }
  return users;
}

/** WARMUP + RUNS rounds: park every recipient's long-poll, send once, wait for all of them. */
async function measure(a: BenchServer, b: BenchServer): Promise<number[]> {
  const alice = await a.register("alice");
  const recipients = await registerMany(b, "bob", USERS);
  const sync = (user: RegisteredUser, since: string | undefined, timeout: number) =>
    syncOnce(b, user, FILTER, since, timeout);
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

console.log(
  `Federation to-device, ${
    twoServersMode(IN_PROCESS)
  }: /sendToDevice to ${USERS} users on the other server, ` +
    `${RUNS} runs after ${WARMUP} warm-up`,
);
const started = performance.now();
const times = (await onTwoServers(IN_PROCESS, measure)).sort((x, y) => x - y);
const ms = (v: number) => v.toFixed(1);
const median = times[Math.floor((times.length - 1) / 2)];
console.log();
console.log(markdownTable(["metric", "unit", "value"], [
  [`sendToDevice on A -> all ${USERS} syncs on B returned it, median`, "ms", ms(median)],
  ["min / max", "ms", `${ms(times[0])} / ${ms(times[times.length - 1])}`],
]));
console.log();
console.log(environmentLine(started));
