/**
 * What `scripts/bench_client.ts` measures and how it is reported: the metrics with the issue's
 * targets and Synapse 1.67's figures on the same workload, percentiles, and the markdown table
 * (per run, or the medians across several runs' JSON files).
 */
import { markdownTable, type RateSummary, summarise } from "./bench_stats.ts";

/** One reported figure and what it is read against. */
export interface MetricDef {
  id: string;
  label: string;
  unit: "msg/s" | "set/s" | "ms" | "MiB";
  better: "higher" | "lower";
  /** The target: at least (higher) or at most (lower) this. */
  target?: number;
  /** A strict bound ("< 100 ms") rather than an inclusive one ("≤ 5 ms"). */
  strict?: boolean;
  /** Synapse 1.67 on SQLite, same workload, same machine. */
  synapse?: number;
}

/** Every metric, in table order. */
export const METRICS: readonly MetricDef[] = [
  {
    id: "send_seq",
    label: "messages/s, one client, sequential",
    unit: "msg/s",
    better: "higher",
    target: 250,
    synapse: 53,
  },
  {
    id: "send_16_rooms",
    label: "messages/s, 16 clients in 16 rooms",
    unit: "msg/s",
    better: "higher",
    target: 1000,
    synapse: 98,
  },
  {
    id: "send_1_room",
    label: "messages/s, 16 clients in one room",
    unit: "msg/s",
    better: "higher",
  },
  { id: "kv_seq", label: "context: raw file kv.set, sequential", unit: "set/s", better: "higher" },
  {
    id: "kv_conc",
    label: "context: raw file kv.set, 16 in flight",
    unit: "set/s",
    better: "higher",
  },
  {
    id: "delivery_p50",
    label: "delivery p50, other long-polls open",
    unit: "ms",
    better: "lower",
    target: 5,
    synapse: 25,
  },
  {
    id: "delivery_p99",
    label: "delivery p99, other long-polls open",
    unit: "ms",
    better: "lower",
    target: 25,
    synapse: 60,
  },
  {
    id: "sync50_first",
    label: "initial sync, 50 rooms × 10, first (cold)",
    unit: "ms",
    better: "lower",
    target: 100,
    strict: true,
    synapse: 633,
  },
  {
    id: "sync50_first_warm",
    label: "initial sync, 50 rooms × 10, first (warm process)",
    unit: "ms",
    better: "lower",
  },
  {
    id: "sync50_repeat",
    label: "initial sync, 50 rooms × 10, repeated",
    unit: "ms",
    better: "lower",
    synapse: 165,
  },
  {
    id: "sync200_first",
    label: "initial sync, 200 rooms × 50, first (cold)",
    unit: "ms",
    better: "lower",
  },
  {
    id: "sync200_first_warm",
    label: "initial sync, 200 rooms × 50, first (warm process)",
    unit: "ms",
    better: "lower",
  },
  {
    id: "sync200_repeat",
    label: "initial sync, 200 rooms × 50, repeated",
    unit: "ms",
    better: "lower",
  },
  {
    id: "sync50_incremental",
    label: "incremental sync, 50 rooms, 1 new message",
    unit: "ms",
    better: "lower",
  },
  {
    id: "rss_idle",
    label: "server RSS, idle after start",
    unit: "MiB",
    better: "lower",
    target: 60,
    strict: true,
    synapse: 97,
  },
  {
    id: "rss_idle_data",
    label: "server RSS, idle after restart on the data",
    unit: "MiB",
    better: "lower",
  },
  { id: "rss_send_peak", label: "server RSS, peak while sending", unit: "MiB", better: "lower" },
  { id: "rss_sync_peak", label: "server RSS, peak during syncs", unit: "MiB", better: "lower" },
  {
    id: "rss_polls_peak",
    label: "server RSS, peak with the long-polls open",
    unit: "MiB",
    better: "lower",
  },
];

/** Samples per metric id: several runs or repeats in one benchmark run. */
export type Samples = Record<string, number[]>;

/** Nearest-rank percentile of `values` (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error("no values");
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** A figure with precision that suits its size: 2.34, 23.4, 234, 2,345. */
export function formatFigure(value: number): string {
  if (value >= 1000) return Math.round(value).toLocaleString("en-US");
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatSpread(s: RateSummary): string {
  if (s.runs.length === 1) return formatFigure(s.median);
  return `${formatFigure(s.median)} (${formatFigure(s.min)}–${formatFigure(s.max)})`;
}

/** How many times better than `reference` the value is (≥ 1 is as good or better). */
function factor(def: MetricDef, value: number, reference: number): number {
  return def.better === "higher" ? value / reference : reference / value;
}

/** Whether a value meets the metric's target. */
export function meetsTarget(def: MetricDef, value: number): boolean | undefined {
  if (def.target === undefined) return undefined;
  if (def.better === "higher") return value >= def.target;
  return def.strict ? value < def.target : value <= def.target;
}

function targetText(def: MetricDef): string {
  if (def.target === undefined) return "—";
  const op = def.better === "higher" ? "≥" : def.strict ? "<" : "≤";
  return `${op} ${formatFigure(def.target)}`;
}

/** The table row of one metric over its samples; undefined when it was not measured. */
function row(def: MetricDef, samples: readonly number[] | undefined): string[] | undefined {
  if (!samples || samples.length === 0) return undefined;
  const s = summarise(samples);
  const met = meetsTarget(def, s.median);
  const vsTarget = def.target === undefined
    ? "—"
    : `${met ? "met" : "MISSED"} (${factor(def, s.median, def.target).toFixed(2)}x)`;
  const vsSynapse = def.synapse === undefined
    ? "—"
    : `${formatFigure(def.synapse)} → ${factor(def, s.median, def.synapse).toFixed(1)}x`;
  return [def.label, def.unit, formatSpread(s), targetText(def), vsTarget, vsSynapse];
}

/** The markdown table of every measured metric: median (min–max) of its samples. */
export function resultsTable(samples: Samples, column = "Tessera median (min–max)"): string {
  const rows = METRICS.map((def) => row(def, samples[def.id])).filter((r) => r !== undefined);
  return markdownTable(
    ["metric", "unit", column, "target", "vs target", "Synapse 1.67 → Tessera is"],
    rows as string[][],
  );
}

/** The footnote that says how to read the ratio columns. */
export const RATIO_NOTE =
  'Ratios are "times better": value/reference for rates, reference/value for times and ' +
  "memory, so ≥ 1x means as good or better. RSS is VmRSS of the deno server process in MiB.";

/** Per run, one figure per metric: the median of that run's samples. */
export function runMedians(samples: Samples): Record<string, number> {
  const medians: Record<string, number> = {};
  for (const [id, values] of Object.entries(samples)) {
    if (values.length > 0) medians[id] = summarise(values).median;
  }
  return medians;
}

/** Samples across runs: each run's median of each metric. */
export function combineRuns(runs: readonly Record<string, number>[]): Samples {
  const combined: Samples = {};
  for (const run of runs) {
    for (const [id, value] of Object.entries(run)) (combined[id] ??= []).push(value);
  }
  return combined;
}
