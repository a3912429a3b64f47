import { assertEquals } from "../assert.ts";
import {
  judgeRun,
  parsePassingList,
  type SytestResult,
  updatedList,
} from "../../scripts/sytest_ratchet.ts";

const run = (statuses: Array<[string, SytestResult["status"]]>): SytestResult[] =>
  statuses.map(([name, status], i) => ({ num: i + 1, file: "tests/a.pl", name, status }));

Deno.test("sytest ratchet: a listed test that fails or skips is a regression", () => {
  const listed = ["tests/a.pl :: one", "tests/a.pl :: two"];
  const verdict = judgeRun(run([["one", "pass"], ["two", "skip"], ["three", "fail"]]), listed);
  assertEquals(verdict.regressions, ["tests/a.pl :: two"]);
  assertEquals([verdict.passed, verdict.failed, verdict.skipped, verdict.total], [1, 1, 1, 3]);
});

Deno.test("sytest ratchet: names repeated in a file count as many times as listed", () => {
  const listed = ["tests/a.pl :: dup", "tests/a.pl :: dup"];
  assertEquals(judgeRun(run([["dup", "pass"], ["dup", "fail"]]), listed).regressions, [
    "tests/a.pl :: dup",
  ]);
  assertEquals(judgeRun(run([["dup", "pass"], ["dup", "pass"]]), listed).regressions, []);
});

Deno.test("sytest ratchet: --update adds new passes in suite order and keeps unseen entries", () => {
  const listed = ["tests/a.pl :: two", "tests/gone.pl :: old"];
  const results = run([["one", "pass"], ["two", "pass"], ["three", "fail"]]);
  assertEquals(judgeRun(results, listed).newlyPassing, ["tests/a.pl :: one"]);
  const text = updatedList(results, listed, "# header\n");
  assertEquals(parsePassingList(text), [
    "tests/a.pl :: one",
    "tests/a.pl :: two",
    "tests/gone.pl :: old",
  ]);
});

Deno.test("sytest ratchet: a test's subtest count is not part of its name", () => {
  const listed = ["tests/a.pl :: cache"];
  assertEquals(judgeRun(run([["cache (3 subtests)", "pass"]]), listed).regressions, []);
  assertEquals(judgeRun(run([["cache (4 subtests)", "fail"]]), listed).regressions, listed);
});
