/**
 * What the poll wake source (TESSERA_WAKE=poll, kv/wake_sources.ts) costs per tick: one
 * `getMany` per 10 subscribed keys, read side by side. Measured for 1, 100 and 1,000 keys over a
 * local KV file (the mode's real setting, keys present so each read returns a value) and over
 * `:memory:`, with a writer committing meanwhile on the file run to show reads under a lock.
 * Prints wall time per tick (median and p99 of many ticks), process CPU per tick, and what that
 * makes per second at the default 100 ms interval.
 *
 * Usage: deno run --allow-all scripts/bench_wake_poll.ts [ticks per size, default 300]
 */
import process from "node:process";
import { addWakes } from "../kv/wake_keys.ts";
import { PollWakeSource } from "../kv/wake_sources.ts";
import { CONFIG_DEFAULTS } from "../domain/config.ts";

const TICKS = Number(Deno.args[0] ?? 300);
const SIZES = [1, 100, 1_000];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function measure(kv: Deno.Kv, keys: number, busyWriter: boolean) {
  // One subscription per key, as one waiting sync per user would make.
  for (let i = 0; i < keys; i += 100) {
    const userIds = Array.from({ length: Math.min(100, keys - i) }, (_, j) => `@u${i + j}:x`);
    await addWakes(kv.atomic(), { userIds }).commit();
  }
  const source = new PollWakeSource(kv, 60_000);
  const offs = Array.from(
    { length: keys },
    (_, i) => source.watchAfter([{ kind: "user", userId: `@u${i}:x` }], "", () => {}),
  );
  let writing = busyWriter;
  const writer = (async () => {
    let n = 0;
    while (writing) await addWakes(kv.atomic(), { roomIds: [`!w${n++ % 50}:x`] }).commit();
  })();
  for (let i = 0; i < 20; i++) await source.tick(); // warm-up
  const times: number[] = [];
  const cpu = process.cpuUsage();
  for (let i = 0; i < TICKS; i++) {
    const start = performance.now();
    await source.tick();
    times.push(performance.now() - start);
  }
  const used = process.cpuUsage(cpu);
  writing = false;
  await writer;
  for (const off of offs) off();
  source.close();
  times.sort((x, y) => x - y);
  // Process CPU (the KV threads included; the writer's share too in the busy run).
  const cpuMs = (used.user + used.system) / 1000 / TICKS;
  return { median: quantile(times, 0.5), p99: quantile(times, 0.99), cpuMs };
}

const dir = await Deno.makeTempDir({ prefix: "tessera-wake-bench-" });
const perSecond = 1000 / CONFIG_DEFAULTS.wakePollMs;
console.log(
  `poll wake source, ${TICKS} ticks per size; per second at the default ${CONFIG_DEFAULTS.wakePollMs} ms:`,
);
try {
  for (
    const [label, path, busy] of [
      ["file", `${dir}/wake.kv`, false],
      ["file + writer", `${dir}/wake-busy.kv`, true],
      [":memory:", ":memory:", false],
    ] as const
  ) {
    for (const keys of SIZES) {
      const kv = await Deno.openKv(path);
      const { median, p99, cpuMs } = await measure(kv, keys, busy);
      kv.close();
      const reads = Math.ceil(keys / 10);
      console.log(
        `${label.padEnd(14)} ${String(keys).padStart(5)} keys: ${reads} getMany/tick, ` +
          `wall median ${median.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, ` +
          `CPU ${cpuMs.toFixed(3)} ms per tick; ${(reads * perSecond).toFixed(0)} getMany/s, ` +
          `${(cpuMs * perSecond / 10).toFixed(2)}% of one core`,
      );
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
