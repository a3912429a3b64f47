/**
 * `deno run -A scripts/bench_import_memory.ts [MODULE ...]`: the resident memory a fresh Deno
 * process gains by importing each module (one child process per module, so nothing is shared),
 * e.g. `./main.ts`, `nodemailer`, `stemmer`. Without arguments it measures `./main.ts` and the
 * dependencies that are loaded lazily because of their size. Prints MiB before and after, and
 * the difference; the median of `--runs=N` (default 3) child processes per module.
 */
const PROBE = `
const before = Deno.memoryUsage().rss;
if (Deno.args[0] !== "") await import(Deno.args[0]);
console.log(JSON.stringify([before, Deno.memoryUsage().rss]));
`;

const runsFlag = Deno.args.find((a) => a.startsWith("--runs="));
const runs = runsFlag ? Number(runsFlag.slice("--runs=".length)) : 3;
const given = Deno.args.filter((a) => !a.startsWith("--"));
const modules = given.length > 0 ? given : ["", "./main.ts", "nodemailer", "node:https", "stemmer"];
const root = new URL("..", import.meta.url);
const probe = await Deno.makeTempFile({ dir: root.pathname, suffix: "_import_probe.ts" });
const mib = (bytes: number) => (bytes / 1_048_576).toFixed(1);
try {
  await Deno.writeTextFile(probe, PROBE);
  for (const module of modules) {
    const samples: Array<[number, number]> = [];
    for (let i = 0; i < runs; i++) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--config", new URL("deno.json", root).pathname, probe, module],
        cwd: root.pathname,
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!out.success) throw new Error(`importing ${module} failed`);
      samples.push(JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!));
    }
    samples.sort((a, b) => (a[1] - a[0]) - (b[1] - b[0]));
    const [before, after] = samples[Math.floor(samples.length / 2)];
    console.log(
      `${(module || "(nothing)").padEnd(14)} ${mib(before)} -> ${mib(after)} MiB (+${
        mib(after - before)
      })`,
    );
  }
} finally {
  await Deno.remove(probe);
}
