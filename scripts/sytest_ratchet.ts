/**
 * SyTest ratchet: compares one SyTest run with the list of tests known to pass
 * (`tests/sytest/passing.txt`) and fails when a listed test no longer passes.
 *
 * usage: deno run --allow-read --allow-write scripts/sytest_ratchet.ts RUN.json [--update] [--subset]
 *
 * `RUN.json` is the per-test result file `../shared/sytest/run.sh` writes beside its TAP output.
 * A test is named `file :: test name`; a name may repeat within a file, so the list is a multiset
 * and a line listed twice needs two passes. `--update` adds newly passing tests to the list (it
 * never removes one: a test leaves the list only by a deliberate edit that says why).
 * `--subset` judges only the listed tests of the files the run reported (a run of a few files).
 *
 * Prints SyTest's totals on one line (the line `.ci/run` shows above the project's own count)
 * and exits 1 when a listed test failed or was skipped.
 *
 * @module
 */

/** One test's outcome as `../shared/sytest/summary.py` writes it. */
export interface SytestResult {
  readonly num: number;
  readonly file: string;
  readonly name: string;
  readonly status: "pass" | "fail" | "skip";
}

/** What one run means against the list. */
export interface RatchetVerdict {
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  readonly total: number;
  /** Listed tests that did not pass in this run. */
  readonly regressions: readonly string[];
  /** Passing tests that are not (yet) on the list. */
  readonly newlyPassing: readonly string[];
}

/**
 * The list's name for a test. A test with subtests is reported with their count ("(3 subtests)"),
 * which changes with how far it got, so the count is not part of the name.
 */
export function sytestKey(result: Pick<SytestResult, "file" | "name">): string {
  return `${result.file} :: ${result.name.replace(/ \(\d+ subtests\)$/, "")}`;
}

/** Reads the list: one `file :: name` per line; blank lines and `#` comments are ignored. */
export function parsePassingList(text: string): string[] {
  return text.split("\n").map((line) => line.trim()).filter((line) =>
    line !== "" && !line.startsWith("#")
  );
}

function countKeys(keys: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** Compares one run's results with the list. */
export function judgeRun(
  results: readonly SytestResult[],
  listed: readonly string[],
): RatchetVerdict {
  const passing = results.filter((r) => r.status === "pass").map(sytestKey);
  const passCounts = countKeys(passing);
  const listedCounts = countKeys(listed);
  const regressions: string[] = [];
  for (const [key, wanted] of listedCounts) {
    const got = passCounts.get(key) ?? 0;
    for (let i = got; i < wanted; i++) regressions.push(key);
  }
  const newlyPassing: string[] = [];
  for (const [key, got] of passCounts) {
    const wanted = listedCounts.get(key) ?? 0;
    for (let i = wanted; i < got; i++) newlyPassing.push(key);
  }
  return {
    passed: passing.length,
    failed: results.filter((r) => r.status === "fail").length,
    skipped: results.filter((r) => r.status === "skip").length,
    total: results.length,
    regressions,
    newlyPassing,
  };
}

/** The list after adding this run's new passes, in the suite's order. */
export function updatedList(
  results: readonly SytestResult[],
  listed: readonly string[],
  header: string,
): string {
  const verdict = judgeRun(results, listed);
  const keep = countKeys([...listed, ...verdict.newlyPassing]);
  const ordered: string[] = [];
  for (const result of results) {
    const key = sytestKey(result);
    const left = keep.get(key) ?? 0;
    if (left > 0) {
      ordered.push(key);
      keep.set(key, left - 1);
    }
  }
  // Listed tests this run did not report at all stay at the end, so nothing drops silently.
  for (const [key, left] of keep) for (let i = 0; i < left; i++) ordered.push(key);
  return `${header}${ordered.join("\n")}\n`;
}

const LIST_HEADER = "# SyTest tests that pass against Tessera: CI fails when one of them fails.\n" +
  "# Regenerate additions with: deno run -A scripts/sytest_ratchet.ts RUN.json --update\n";

if (import.meta.main) {
  const [runPath, ...flags] = Deno.args;
  if (runPath === undefined) {
    console.error("usage: sytest_ratchet.ts RUN.json [--update]");
    Deno.exit(2);
  }
  const listPath = new URL("../tests/sytest/passing.txt", import.meta.url);
  const results = JSON.parse(await Deno.readTextFile(runPath)) as SytestResult[];
  let listText = "";
  try {
    listText = await Deno.readTextFile(listPath);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const fullList = parsePassingList(listText);
  const filesRun = new Set(results.map((r) => r.file));
  const listed = flags.includes("--subset")
    ? fullList.filter((key) => filesRun.has(key.split(" :: ")[0]))
    : fullList;
  const verdict = judgeRun(results, listed);
  if (flags.includes("--update")) {
    await Deno.writeTextFile(listPath, updatedList(results, fullList, LIST_HEADER));
    console.log(`sytest list: ${verdict.newlyPassing.length} added`);
  }
  for (const key of verdict.regressions) console.log(`sytest regression: ${key}`);
  if (verdict.newlyPassing.length > 0 && !flags.includes("--update")) {
    console.log(
      `sytest: ${verdict.newlyPassing.length} passing tests are not on tests/sytest/passing.txt ` +
        "(add them with --update):",
    );
    for (const key of verdict.newlyPassing) console.log(`  ${key}`);
  }
  console.log(
    `SyTest: ${verdict.passed} passed, ${verdict.failed} failed, ${verdict.skipped} skipped of ` +
      `${verdict.total} (listed ${listed.length}, regressions ${verdict.regressions.length}; ` +
      "Synapse 1.67 in this harness: 614 passed)",
  );
  Deno.exit(verdict.regressions.length > 0 ? 1 : 0);
}
