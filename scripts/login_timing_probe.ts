/**
 * One-off probe for issue 8 finding 17: does login time tell whether an account exists? Runs the
 * real HTTP login route in process at the server's default scrypt cost (rate limits off, so
 * every attempt is answered) and prints the median time of a wrong password for an existing
 * user, for an unknown user and for a passwordless one. Before the fix unknown users were
 * answered without hashing. Usage: `deno run --allow-all scripts/login_timing_probe.ts [runs]`.
 */
import { assembleServer } from "../main.ts";
import { loadConfig } from "../domain/config.ts";
import { summarise } from "./bench_stats.ts";

const runs = Number(Deno.args[0] ?? 9);
const kv = await Deno.openKv(":memory:");
const config = loadConfig(
  { TESSERA_SERVER_NAME: "probe.test", TESSERA_RATE_LIMITS: "off" },
  { dev: true },
);
const { app } = await assembleServer(config, kv);

async function post(path: string, body: unknown): Promise<number> {
  const res = await app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await res.body?.cancel();
  return res.status;
}

const register = (username: string, password?: string) =>
  post("/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy" } });
await register("alice", "correct horse battery staple");
await register("nopass");

async function loginMs(user: string): Promise<number> {
  const start = performance.now();
  const status = await post("/_matrix/client/v3/login", {
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password: "wrong guess",
  });
  if (status !== 403) throw new Error(`login as ${user}: ${status}`);
  return performance.now() - start;
}

const cases = { existing: "alice", unknown: "nobody", passwordless: "nopass" };
const times: Record<string, number[]> = { existing: [], unknown: [], passwordless: [] };
// Interleaved, so drift in machine load hits every case alike.
for (let i = 0; i < runs; i++) {
  for (const [name, user] of Object.entries(cases)) times[name].push(await loginMs(user));
}
for (const [name, list] of Object.entries(times)) {
  const s = summarise(list);
  console.log(
    `login, wrong password, ${name} user: median ${s.median.toFixed(1)} ms ` +
      `(min ${s.min.toFixed(1)}, max ${s.max.toFixed(1)}, ${runs} runs)`,
  );
}
kv.close();
