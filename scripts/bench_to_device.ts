/**
 * Send-to-device figures, in process (`app.request`, no sockets) over a durable KV file:
 * - one `/sendToDevice` to 100 devices, as `*` of one user and as 100 users with one device;
 * - delivering 250 waiting messages to one device through `/sync` (three responses).
 * Each is run several times; medians are printed.
 * Usage: deno run -A scripts/bench_to_device.ts [runs] [--memory]
 */
import { startInProcessServer } from "./bench_in_process.ts";
import { summarise } from "./bench_stats.ts";

const RUNS = Number(Deno.args[0] ?? "7");
/** `--memory`: a `:memory:` KV, to separate CPU cost from the disk sync of each commit. */
const MEMORY = Deno.args.includes("--memory");
const V3 = "/_matrix/client/v3";

const server = await startInProcessServer("tessera-to-device-bench-", MEMORY);
const call = server.call;

async function register(localpart: string, password?: string) {
  const body: Record<string, unknown> = { username: localpart, auth: { type: "m.login.dummy" } };
  if (password) body.password = password;
  const r = await call("POST", `${V3}/register`, undefined, body);
  return { userId: r.user_id as string, token: r.access_token as string, deviceId: r.device_id };
}

/** An olm-sized payload (~2 KB), like an encrypted m.room_key. */
const payload = { algorithm: "m.olm.v1.curve25519-aes-sha2", ciphertext: "x".repeat(2000) };

try {
  const alice = await register("alice");
  const many = await register("many", "pw");
  for (let i = 1; i < 100; i++) {
    await call("POST", `${V3}/login`, undefined, {
      type: "m.login.password",
      user: "many",
      password: "pw",
      device_id: `D${i}`,
    });
  }
  const users = [];
  for (let i = 0; i < 100; i++) users.push(await register(`u${i}`));

  const star: number[] = [];
  const spread: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    let t = performance.now();
    await call("PUT", `${V3}/sendToDevice/m.room.encrypted/star${run}`, alice.token, {
      messages: { [many.userId]: { "*": payload } },
    });
    star.push(performance.now() - t);
    const messages: Record<string, Record<string, unknown>> = {};
    for (const u of users) messages[u.userId] = { [u.deviceId]: payload };
    t = performance.now();
    await call("PUT", `${V3}/sendToDevice/m.room.encrypted/spread${run}`, alice.token, {
      messages,
    });
    spread.push(performance.now() - t);
  }

  const bob = await register("bob");
  const deliver: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = await call("GET", `${V3}/sync?timeout=0`, bob.token);
    for (let n = 0; n < 250; n++) {
      await call("PUT", `${V3}/sendToDevice/m.room.encrypted/q${run}-${n}`, alice.token, {
        messages: { [bob.userId]: { [bob.deviceId]: { ...payload, n } } },
      });
    }
    let since = start.next_batch;
    let got = 0;
    const t = performance.now();
    while (got < 250) {
      const r = await call("GET", `${V3}/sync?since=${since}&timeout=0`, bob.token);
      got += r.to_device.events.length;
      since = r.next_batch;
    }
    deliver.push(performance.now() - t);
    // Acknowledge the last batch so the next run starts from an empty inbox.
    await call("GET", `${V3}/sync?since=${since}&timeout=0`, bob.token);
  }

  const fmt = (xs: number[]) =>
    `${summarise(xs).median.toFixed(1)} ms (runs: ${xs.map((x) => x.toFixed(1)).join(", ")})`;
  console.log(`sendToDevice, one user's 100 devices via "*": median ${fmt(star)}`);
  console.log(`sendToDevice, 100 users x 1 device:          median ${fmt(spread)}`);
  console.log(`sync delivery of 250 waiting messages (3 syncs): median ${fmt(deliver)}`);
} finally {
  await server.close();
}
