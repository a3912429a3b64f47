/**
 * Summarise a V8 `.cpuprofile` (e.g. from `bench_client.ts --cpu-prof=DIR`): self time by
 * function and by file, and inclusive time of the project's own functions, so "where does the
 * time go" has an answer without a profiler UI.
 *
 * Run: deno run --allow-read scripts/bench_cpu_profile.ts FILE.cpuprofile [--top=N]
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A short location: the path inside the repo, an npm package, or the runtime's own. */
function where(url: string): string {
  if (url === "") return "(native)";
  const npm = /\/npm\/registry\.npmjs\.org\/([^/]+(?:\/[^/]+)?)\//.exec(url);
  if (npm) return `npm:${npm[1].replace(/\/\d[^/]*$/, "")}`;
  const repo = /\/work\/[^/]+\/(.+)$/.exec(url);
  if (repo) return repo[1];
  return url.replace(/^ext:/, "ext:");
}

function table(title: string, rows: [string, number][], totalMs: number, top: number): void {
  console.log(`\n${title}`);
  for (const [name, ms] of rows.sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${(100 * ms / totalMs).toFixed(1).padStart(6)}%  ${ms.toFixed(0).padStart(7)} ms  ${name}`,
    );
  }
}

/** Print the summary of one profile. */
export function summariseProfile(profile: CpuProfile, top = 25): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfMs = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const totalMs = [...selfMs.values()].reduce((a, b) => a + b, 0);
  const idle = [...selfMs].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)")
    .reduce((a, [, ms]) => a + ms, 0);
  console.log(
    `profile: ${(totalMs / 1000).toFixed(1)} s sampled, ${(100 * idle / totalMs).toFixed(1)}% idle`,
  );

  const selfByFunction = new Map<string, number>();
  const selfByFile = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const node = byId.get(id)!;
    const f = node.callFrame;
    const name = `${f.functionName || "(anonymous)"} ${where(f.url)}:${f.lineNumber + 1}`;
    selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + ms);
    selfByFile.set(where(f.url), (selfByFile.get(where(f.url)) ?? 0) + ms);
    // Inclusive time of project functions: credit each distinct ancestor once per sample.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      const file = where(cf.url);
      if (!/^(domain|kv|routes|main\.ts)/.test(file)) continue;
      const key = `${cf.functionName || "(anonymous)"} ${file}:${cf.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
    }
  }
  table("self time by file", [...selfByFile], totalMs, top);
  table("self time by function", [...selfByFunction], totalMs, top);
  table("inclusive time of project functions", [...inclusive], totalMs, top);
}

if (import.meta.main) {
  const file = Deno.args.find((a) => !a.startsWith("--"));
  if (!file) throw new Error("usage: bench_cpu_profile.ts FILE.cpuprofile [--top=N]");
  const top = Number(Deno.args.find((a) => a.startsWith("--top="))?.slice(6) ?? 25);
  summariseProfile(JSON.parse(await Deno.readTextFile(file)) as CpuProfile, top);
}
