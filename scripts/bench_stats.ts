/** Summaries and formatting for benchmark runs: median, spread and ratios to a ceiling. */

/** Median, min and max of a list of per-run rates. */
export interface RateSummary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** Summarise per-run rates; the median rather than the mean, since one slow run is noise. */
export function summarise(runs: readonly number[]): RateSummary {
  if (runs.length === 0) throw new Error("no runs to summarise");
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs: [...runs] };
}

/** The `q` quantile (0 < q <= 1) of ascending `sorted` values: the nearest-rank value. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** A rate as a whole number with thousands separators, e.g. "12,345". */
export function formatRate(rate: number): string {
  return Math.round(rate).toLocaleString("en-US");
}

/** "median (min-max)" of a summary. */
export function formatSummary(s: RateSummary): string {
  return `${formatRate(s.median)} (${formatRate(s.min)}-${formatRate(s.max)})`;
}

/** A ratio to two decimals with an x, e.g. "0.82x". */
export function formatRatio(value: number, ceiling: number): string {
  return ceiling > 0 ? `${(value / ceiling).toFixed(2)}x` : "n/a";
}

/** A markdown table with a header row; cells are padded so the raw text lines up too. */
export function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map(line),
  ].join("\n");
}
