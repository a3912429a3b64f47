/**
 * A background job across real processes killed and restarted: three Tessera processes on one
 * KV file run the probe job (TESSERA_JOB_PROBE_MS: it holds its lease 1.5 s every 2 s period)
 * with 4.5 s leases (TESSERA_JOB_LEASE_MS), renewed every 1.5 s, so only a stall of 3 s or
 * more under CI load could cost a live process its lease. Four times the test finds the process
 * in the middle of a run, kills it (SIGKILL three times, as a crash; SIGTERM once, the graceful
 * path) and starts it again. The run log the runner keeps in KV then must show every period
 * run to its end exactly once, each run a killed process left unfinished taken over by another
 * process for the same period, and no two runs at once.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvJobLeaseStore } from "../../kv/job_lease_store.ts";
import type { JobRunRecord, JobState } from "../../domain/ports/job_lease_store.ts";
import { type FleetProcess, startFleet } from "./fleet_harness.ts";

const JOB = "probe";

/** The holder name the process's latest start printed (main.ts logs it). */
function holderOf(process: FleetProcess): string | undefined {
  const names = [...process.output().matchAll(/background jobs run as (\S+)/g)];
  return names.at(-1)?.[1];
}

/** Ask `probe` until it answers; a guard against a hang, not a timing assertion. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const found = await probe();
    if (found !== undefined) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`never happened: ${what}`);
}

interface Interruption {
  holder: string;
  signal: "SIGKILL" | "SIGTERM";
  /** The run in progress when the state was read. */
  run: number;
  /** After the process had exited. */
  at: number;
}

Deno.test("fleet: a background job runs once per period while processes are killed and restarted", async () => {
  const fleet = await startFleet(3, {
    env: {
      TESSERA_JOB_LEASE_MS: "4500",
      TESSERA_JOB_PROBE_MS: "1500",
      TESSERA_JOB_PROBE_PERIOD_MS: "2000",
    },
  });
  const kv = await Deno.openKv(fleet.kvPath);
  const store = new KvJobLeaseStore(kv);
  let failed = true;
  try {
    const interruptions: Interruption[] = [];
    const signals = ["SIGKILL", "SIGKILL", "SIGTERM", "SIGKILL"] as const;
    for (const signal of signals) {
      // A run under way, in a process of this fleet's current incarnation.
      const { state, process } = await waitFor("a run under way", async () => {
        const state = await store.state(JOB);
        if (!state?.holder || state.leaseUntil <= Date.now()) return undefined;
        const process = fleet.processes.find((p) => p.running && holderOf(p) === state.holder);
        return process && { state, process };
      });
      if (signal === "SIGKILL") await process.kill("SIGKILL");
      else await process.stop();
      interruptions.push({ holder: state.holder, signal, run: state.run, at: Date.now() });
      await process.start();
    }
    // Two more periods run to their end after the last restart.
    const last = (await store.state(JOB) as JobState).run;
    await waitFor("two more periods", async () => {
      const runs = await store.runs(JOB);
      const later = runs.filter((r) => r.run > last && r.outcome === "done");
      return later.length >= 2 ? true : undefined;
    });
    const runs = await store.runs(JOB);
    checkRuns(runs, interruptions);
    failed = false;
  } finally {
    kv.close();
    if (failed) console.error(fleet.output());
    await fleet.stop();
  }
});

function checkRuns(runs: JobRunRecord[], interruptions: Interruption[]): void {
  const killed = new Map(interruptions.map((i) => [i.holder, i]));
  // Every period (due time) ran to its end exactly once, in order.
  const done = runs.filter((r) => r.outcome === "done");
  const dues = done.map((r) => r.dueAt);
  assertEquals(new Set(dues).size, dues.length, "a period ran to its end twice");
  assertEquals([...dues].sort((a, b) => a - b), dues, "periods out of order");
  for (const run of runs) {
    assert(
      dues.includes(run.dueAt),
      `period ${run.dueAt} (run ${run.run} of ${run.holder}) never completed`,
    );
    // Only an interrupted process leaves a run unfinished or stopped.
    if (run.outcome === undefined) {
      assertEquals(killed.get(run.holder)?.signal, "SIGKILL", `run ${run.run} unfinished`);
    }
    if (run.outcome === "stopped") {
      assertEquals(killed.get(run.holder)?.signal, "SIGTERM", `run ${run.run} stopped`);
    }
    assert(run.outcome !== "failed", `run ${run.run} failed`);
  }
  // Never two at once: each run starts after the previous one ended (a killed run ends when
  // its process died, which was before the test noted the kill).
  const byStart = [...runs].sort((a, b) => a.startedAt - b.startedAt);
  for (let i = 1; i < byStart.length; i++) {
    const before = byStart[i - 1];
    const end = before.finishedAt ?? killed.get(before.holder)?.at;
    assert(end !== undefined, `run ${before.run} has no end`);
    assert(
      byStart[i].startedAt >= end,
      `run ${byStart[i].run} (${byStart[i].holder}) started while run ${before.run} ran`,
    );
  }
  // The kills landed mid-run (the test's premise), and each such run was resumed: the same
  // period taken by another process and run to its end.
  const cut = interruptions.filter((i) => runs.find((r) => r.run === i.run)?.outcome !== "done");
  assert(cut.length >= 2, "no interruption landed in the middle of a run");
  for (const i of cut) {
    const run = runs.find((r) => r.run === i.run)!;
    const resumed = done.find((r) => r.dueAt === run.dueAt);
    assert(resumed && resumed.holder !== i.holder, `period ${run.dueAt} not resumed`);
    assert(resumed.startedAt >= i.at || i.signal === "SIGTERM");
  }
}
