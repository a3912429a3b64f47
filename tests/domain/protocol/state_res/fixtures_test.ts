/**
 * ruma's state resolution fixtures, read in place: every named test must resolve to exactly its
 * expected state, and the iterative, batched and atomic drivers must agree.
 */
import assert from "node:assert/strict";
import { splitStateKey, type StateMap } from "../../../../domain/protocol/events.ts";
import {
  expectedStateMap,
  FixtureRunner,
  loadExpected,
  loadPdus,
  loadStateMapFiles,
} from "./fixture_harness.ts";
import { checkEventAuth } from "../../../../domain/protocol/auth_rules.ts";
import {
  resolveStateV2,
  type StateResolutionV2Rules,
  stateResolutionV2Rules,
} from "../../../../domain/protocol/state_res/state_res_v2.ts";

/** Sorted `type|state_key -> id` entries, so a failure shows a readable diff. */
function entries(map: StateMap): [string, string][] {
  return [...map].map(([key, id]): [string, string] => [splitStateKey(key).join("|"), id])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

const expected = await loadExpected();

Deno.test("state res fixtures: all 13 named tests are present", () => {
  assert.equal(Object.keys(expected).length, 13);
});

for (const [name, fixture] of Object.entries(expected)) {
  Deno.test(`state res fixture ${name} (${fixture.mode}, v${fixture.room_version})`, async (t) => {
    const loaded = await loadPdus(fixture.pdu_files);
    assert.equal(loaded.version.id, fixture.room_version);
    assert.equal(
      loaded.version.stateResolution,
      fixture.state_resolution === "v2.1" ? "v2.1" : "v2",
    );
    const want = entries(expectedStateMap(fixture));

    if (fixture.mode === "state_maps") {
      const runner = new FixtureRunner(loaded);
      const maps = await loadStateMapFiles(fixture.state_map_files);
      assert.deepEqual(entries(await runner.stateMaps(maps)), want);
      return;
    }

    await t.step("iterative", async () => {
      const runner = new FixtureRunner(loaded);
      assert.deepEqual(entries(await runner.iterative()), want);
      // Two resolutions per event plus the leaves: the walk really visited every event.
      assert.equal(runner.calls, 2 * loaded.events.size + 1);
    });
    await t.step("batched", async () => {
      const runner = new FixtureRunner(loaded);
      assert.deepEqual(entries(await runner.batched()), want);
      assert.equal(runner.calls, fixture.pdu_files.length);
    });
    await t.step("atomic", async () => {
      assert.deepEqual(entries(await new FixtureRunner(loaded).atomic()), want);
    });
  });
}

// Each v2.1 change is needed by one of the MSC4297 fixtures: problem A by the empty starting
// state, problem B by the conflicted state subgraph. Switching either off must break it.
for (
  const [name, needed] of [
    ["msc4297_problem_a_state_res_v2_1", "beginWithEmptyState"],
    ["msc4297_problem_b_state_res_v2_1", "includeConflictedSubgraph"],
  ] as const
) {
  Deno.test(`state res fixture ${name} needs v2.1's ${needed}`, async () => {
    const fixture = expected[name];
    const loaded = await loadPdus(fixture.pdu_files);
    const maps = new FixtureRunner(loaded).stateMapsOf(
      await loadStateMapFiles(fixture.state_map_files),
    );
    const resolve = (rules: StateResolutionV2Rules) =>
      resolveStateV2(
        {
          version: loaded.version,
          stateMaps: maps,
          getEvent: (id) => Promise.resolve(loaded.events.get(id)),
        },
        rules,
        checkEventAuth,
      );
    const want = entries(expectedStateMap(fixture));
    const full = stateResolutionV2Rules("v2.1");
    assert.deepEqual(entries(await resolve(full)), want);
    assert.notDeepEqual(entries(await resolve({ ...full, [needed]: false })), want);
  });
}
