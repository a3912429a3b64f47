/**
 * `deno task replay [kv-path] [--into path] [--show N]`: rebuild every event store projection
 * from the log into a fresh database (in memory unless --into names an empty file), compare with
 * the live projections, print the differences, and exit 1 when there are any (2 on bad usage).
 * The KV path defaults to TESSERA_KV_PATH, then to the server's default file.
 */
import { replay, type ReplayDifference, type ReplayProgress } from "../kv/replay.ts";
import { CONFIG_DEFAULTS } from "../domain/config.ts";

function usage(message: string): never {
  console.error(`${message}\nusage: deno task replay [kv-path] [--into path] [--show N]`);
  Deno.exit(2);
}

function parseArgs(args: string[]): { path: string; into: string; show: number } {
  let path: string | undefined;
  let into = ":memory:";
  let show = 50;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--into") into = args[++i] ?? usage("--into needs a path");
    else if (arg === "--show") show = Number(args[++i] ?? usage("--show needs a number"));
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else path = arg;
  }
  // The same file the server opens by default, so `deno task replay` checks the dev database.
  path ??= Deno.env.get("TESSERA_KV_PATH") || CONFIG_DEFAULTS.kvPath;
  if (!Number.isInteger(show) || show < 0) usage("--show needs a whole number");
  return { path, into, show };
}

function describe(value: unknown): string {
  if (value === undefined) return "(missing)";
  const text = JSON.stringify(
    value,
    (_, v) => (v instanceof Uint8Array ? `<${v.byteLength} bytes>` : v),
  );
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

function printDifference(d: ReplayDifference): void {
  console.log(`${d.map} ${JSON.stringify(d.key)}`);
  console.log(`  live:    ${describe(d.live)}`);
  console.log(`  rebuilt: ${describe(d.rebuilt)}`);
}

if (import.meta.main) {
  const { path, into, show } = parseArgs(Deno.args);
  try {
    await Deno.stat(path);
  } catch {
    usage(`no KV database at ${path}`);
  }
  const source = await Deno.openKv(path);
  const target = await Deno.openKv(into);
  const started = performance.now();
  let nextReport = 0;
  const onProgress = (p: ReplayProgress) => {
    const now = performance.now();
    if (p.phase === "rebuild" && now < nextReport && p.eventsDone < p.events) return;
    nextReport = now + 1000;
    const seconds = ((now - started) / 1000).toFixed(1);
    console.error(
      p.phase === "rebuild"
        ? `rebuilding: ${p.eventsDone}/${p.events} events, ${p.roomsDone}/${p.rooms} rooms (${seconds}s)`
        : `comparing projections (${seconds}s)`,
    );
  };
  try {
    const report = await replay({
      source,
      target,
      onProgress,
      maxDifferences: show,
    });
    report.differences.forEach(printDifference);
    if (report.differenceCount > report.differences.length) {
      console.log(`... and ${report.differenceCount - report.differences.length} more`);
    }
    console.log(
      `replayed ${report.events} events in ${report.rooms} rooms: ` +
        `${report.differenceCount} difference(s)`,
    );
    Deno.exitCode = report.differenceCount === 0 ? 0 : 1;
  } finally {
    source.close();
    target.close();
  }
}
