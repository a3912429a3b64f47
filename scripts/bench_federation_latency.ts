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
import { markdownTable, quantile } from "./bench_stats.ts";
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

const SENDS = numberFlag("sends", 100);
const WARMUP = numberFlag("warmup", 5);
const enc = encodeURIComponent;
/** Bob's sync: the room timeline only, so a round's poll returns for its message alone. */
const FILTER = JSON.stringify({
  room: { timeline: { limit: 10 }, ephemeral: { types: [] }, account_data: { types: [] } },
  presence: { types: [] },
  account_data: { types: [] },
});

/** Bob joins Alice's room; then SENDS + WARMUP rounds of send-on-A, long-poll-returns-on-B. */
async function measure(a: BenchServer, b: BenchServer): Promise<number[]> {
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const roomId = await sharedPublicRoom(a, alice, b, bob);
  const sync = (since: string | undefined, timeout: number) =>
    syncOnce(b, bob, FILTER, since, timeout);
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

console.log(
  `Federation latency, ${twoServersMode(IN_PROCESS)}: ${SENDS} sends after ${WARMUP} warm-up`,
);
const started = performance.now();
const delays = (await onTwoServers(IN_PROCESS, measure)).sort((x, y) => x - y);
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
  `${environmentLine(started)}; p50 ${p50 <= 50 ? "meets" : "misses"} the 50 ms target`,
);
