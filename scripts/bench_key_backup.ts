/**
 * Key backup figures, in process (`app.request`, no sockets) over a durable KV file:
 * - one `PUT /room_keys/keys` of 1,000 sessions (about 1 KiB of session_data each, 50 rooms)
 *   into a fresh version;
 * - one `GET /room_keys/keys` of those 1,000 sessions;
 * - re-uploading the same 1,000 sessions (every key loses the replacement rule: reads only).
 * Each is run several times; medians are printed.
 * Usage: deno run -A scripts/bench_key_backup.ts [runs] [--memory]
 */
import { startInProcessServer } from "./bench_in_process.ts";
import { summarise } from "./bench_stats.ts";

const RUNS = Number(Deno.args[0] ?? "7");
/** `--memory`: a `:memory:` KV, to separate CPU cost from the disk sync of each commit. */
const MEMORY = Deno.args.includes("--memory");
const SESSIONS = 1000;
const V3 = "/_matrix/client/v3";
const ALG = "m.megolm_backup.v1.curve25519-aes-sha2";

const server = await startInProcessServer("tessera-key-backup-bench-", MEMORY);
const call = server.call;

/** A realistic upload: base64-sized ephemeral key, ciphertext and MAC per session. */
function uploadBody(run: number): string {
  const rooms: Record<string, { sessions: Record<string, unknown> }> = {};
  for (let i = 0; i < SESSIONS; i++) {
    const roomId = `!room${i % 50}:bench.example`;
    rooms[roomId] ??= { sessions: {} };
    rooms[roomId].sessions[`session-${run}-${i}-${"s".repeat(30)}`] = {
      first_message_index: i % 5,
      forwarded_count: 0,
      is_verified: i % 2 === 0,
      session_data: {
        ephemeral: "e".repeat(43),
        ciphertext: "c".repeat(900),
        mac: "m".repeat(11),
      },
    };
  }
  return JSON.stringify({ rooms });
}

const registered = await call(
  "POST",
  `${V3}/register`,
  undefined,
  JSON.stringify({ username: "bench", auth: { type: "m.login.dummy" } }),
);
const token: string = registered.access_token;

const put: number[] = [];
const get: number[] = [];
const repeat: number[] = [];
for (let run = 0; run < RUNS; run++) {
  const created = await call(
    "POST",
    `${V3}/room_keys/version`,
    token,
    JSON.stringify({ algorithm: ALG, auth_data: { public_key: "pk" } }),
  );
  const body = uploadBody(run);
  const path = `${V3}/room_keys/keys?version=${created.version}`;
  let start = performance.now();
  const stored = await call("PUT", path, token, body);
  put.push(performance.now() - start);
  if (stored.count !== SESSIONS) throw new Error(`stored ${stored.count} keys`);
  start = performance.now();
  const all = await call("GET", path, token);
  get.push(performance.now() - start);
  if (Object.keys(all.rooms).length !== 50) throw new Error("GET missed rooms");
  start = performance.now();
  const again = await call("PUT", path, token, body);
  repeat.push(performance.now() - start);
  if (again.etag !== stored.etag) throw new Error("a repeated upload changed the etag");
}

const ms = (runs: number[]) => {
  const s = summarise(runs);
  return `${s.median.toFixed(1)} ms (${s.min.toFixed(1)}-${s.max.toFixed(1)})`;
};
console.log(`key backup, ${MEMORY ? ":memory:" : "durable"} KV, ${RUNS} runs, medians (min-max):`);
console.log(`  PUT /room_keys/keys, ${SESSIONS} new sessions: ${ms(put)}`);
console.log(`  GET /room_keys/keys, ${SESSIONS} sessions:     ${ms(get)}`);
console.log(`  PUT again, nothing replaced:         ${ms(repeat)}`);
await server.close();
