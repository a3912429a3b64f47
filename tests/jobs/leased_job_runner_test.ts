/**
 * Leased background jobs: several runners (as several processes would) over one KV database and
 * one injected clock. Exactly one runs each period, a dead holder's job is taken over once its
 * lease runs out, and a job never runs twice at once.
 */
import { assert, assertEquals } from "../assert.ts";
import { type LeasedJob, LeasedJobRunner } from "../../domain/jobs/leased_job_runner.ts";
import { KvJobLeaseStore } from "../../kv/job_lease_store.ts";

/** One clock for every runner; each runner gets its own timers, so a "dead" one never fires. */
class FakeClock {
  now = 1_000_000;
  readonly #timers = new Set<{ at: number; fire: () => void; frozen: () => boolean }>();

  /** A SetTimer whose timers fire on `advance` unless `frozen()` (a dead process's). */
  timers(frozen: () => boolean = () => false) {
    return (fire: () => void, ms: number) => {
      const timer = { at: this.now + ms, fire, frozen };
      this.#timers.add(timer);
      return () => this.#timers.delete(timer);
    };
  }

  /** Move time on and fire the timers now due (not those of frozen owners). */
  async advance(ms: number): Promise<void> {
    this.now += ms;
    for (const timer of [...this.#timers]) {
      if (timer.at > this.now || timer.frozen()) continue;
      this.#timers.delete(timer);
      timer.fire();
    }
    // Let the fired callbacks' KV round trips finish.
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** A job that counts its runs and the most running at once; `hold` keeps a run going. */
function countingJob(name: string, periodMs: number) {
  let running = 0;
  let hold: Promise<void> | undefined;
  const job = {
    name,
    periodMs,
    runs: [] as string[],
    mostAtOnce: 0,
    holdNext(): () => void {
      let release!: () => void;
      hold = new Promise((resolve) => release = resolve);
      return release;
    },
    running: () => running,
  };
  const leased = (holder: string): LeasedJob => ({
    name,
    periodMs,
    run: async () => {
      running++;
      job.mostAtOnce = Math.max(job.mostAtOnce, running);
      job.runs.push(holder);
      try {
        if (hold) await hold;
      } finally {
        running--;
      }
    },
  });
  return { job, leased };
}

async function fleet(size: number, clock: FakeClock, leaseMs = 30_000, jitterMs = 0) {
  const kv = await Deno.openKv(":memory:");
  const store = new KvJobLeaseStore(kv);
  const counted = countingJob("sweep", 60_000);
  const runners = Array.from({ length: size }, (_, i) =>
    new LeasedJobRunner({
      store,
      jobs: [counted.leased(`p${i}`)],
      holder: `p${i}`,
      now: () => clock.now,
      setTimer: clock.timers(),
      leaseMs,
      jitterMs,
      log: () => {},
    }));
  return { kv, store, counted: counted.job, runners };
}

Deno.test("jobs: of several runners finding a job due, exactly one runs it each period", async () => {
  const clock = new FakeClock();
  const { kv, store, counted, runners } = await fleet(3, clock);
  try {
    for (let period = 1; period <= 4; period++) {
      // All three look at once, as processes woken by the same due time would.
      await Promise.all(runners.map((r) => r.runDue()));
      assertEquals(counted.runs.length, period, `period ${period}`);
      // A second look within the period finds it not due.
      await Promise.all(runners.map((r) => r.runDue()));
      assertEquals(counted.runs.length, period);
      await clock.advance(60_000);
    }
    const log = await store.runs("sweep");
    assertEquals(log.map((r) => r.outcome), ["done", "done", "done", "done"]);
    // Each period's due time once: the first run is due at once (0), then one per period.
    const dues = log.map((r) => r.dueAt);
    assertEquals(new Set(dues).size, 4);
    assertEquals(dues.slice(2).map((d, i) => d - dues[i + 1]), [60_000, 60_000]);
  } finally {
    kv.close();
  }
});

Deno.test("jobs: started runners keep one run per period on their timers alone", async () => {
  const clock = new FakeClock();
  // Each look comes up to 1 s late (at random), so the three do not all try at once.
  const { kv, counted, runners } = await fleet(3, clock, 30_000, 1_000);
  try {
    runners.forEach((r) => r.start());
    await clock.advance(1_000);
    assertEquals(counted.runs.length, 1);
    for (let step = 0; step < 13; step++) await clock.advance(15_000);
    // 195 s later: three more periods (each up to a second late), each run once, by anyone.
    assertEquals(counted.runs.length, 4);
    assertEquals(counted.mostAtOnce, 1);
  } finally {
    await Promise.all(runners.map((r) => r.stop()));
    kv.close();
  }
});

Deno.test("jobs: a run never overlaps another, and renewal keeps a long run's lease", async () => {
  const clock = new FakeClock();
  const { kv, store, counted, runners } = await fleet(2, clock, 30_000);
  try {
    const release = counted.holdNext();
    runners[0].start();
    await clock.advance(0);
    assertEquals(counted.running(), 1);
    // Far past one lease length, renewed every 10 s: the other runner never gets it.
    runners[1].start();
    for (let step = 0; step < 20; step++) await clock.advance(5_000);
    assertEquals(counted.runs, ["p0"]);
    const state = await store.state("sweep");
    assertEquals(state?.holder, "p0");
    assert(state!.leaseUntil > clock.now);
    release();
    await settle();
    assertEquals(counted.running(), 0);
    assertEquals((await store.state("sweep"))?.holder, "");
    assertEquals(counted.mostAtOnce, 1);
  } finally {
    await Promise.all(runners.map((r) => r.stop()));
    kv.close();
  }
});

Deno.test("jobs: a dead holder's job is taken over after its lease runs out, and the dead run's late end changes nothing", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const store = new KvJobLeaseStore(kv);
  const { job: counted, leased } = countingJob("sweep", 60_000);
  let dead = false;
  const signals: AbortSignal[] = [];
  const make = (holder: string, frozen: () => boolean) =>
    new LeasedJobRunner({
      store,
      jobs: [{
        ...leased(holder),
        run: (signal) => {
          signals.push(signal);
          return leased(holder).run(signal);
        },
      }],
      holder,
      now: () => clock.now,
      setTimer: clock.timers(frozen),
      leaseMs: 30_000,
      jitterMs: 0,
      log: () => {},
    });
  const a = make("a", () => dead);
  const b = make("b", () => false);
  try {
    const releaseA = counted.holdNext();
    a.start();
    await clock.advance(0);
    assertEquals(counted.runs, ["a"]);
    // A stops running (as a SIGKILLed process would): no more renewals.
    dead = true;
    b.start();
    await clock.advance(0);
    await clock.advance(29_000);
    assertEquals(counted.runs, ["a"], "taken over before the lease ran out");
    counted.holdNext()(); // B's run ends at once
    await clock.advance(2_000);
    assertEquals(counted.runs, ["a", "b"]);
    const log = await store.runs("sweep");
    assertEquals(log.map((r) => [r.holder, r.outcome]), [["a", undefined], ["b", "done"]]);
    // The same due time, run again: the period is done once in the end.
    assertEquals(log[0].dueAt, log[1].dueAt);
    const afterB = await store.state("sweep");
    assertEquals(afterB?.holder, "");
    // A comes back to life: its renewal fails, its run is aborted, its release is refused.
    dead = false;
    await clock.advance(10_000);
    assert(signals[0].aborted, "the dead holder's run was told it lost the lease");
    releaseA();
    await settle();
    assertEquals(await store.state("sweep"), afterB, "the late end moved the schedule");
    assertEquals((await store.runs("sweep")).length, 2);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    kv.close();
  }
});

Deno.test("jobs: a stop gives the lease back at once with the job still due; a failed run is retried", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const store = new KvJobLeaseStore(kv);
  let fail = true;
  let runs = 0;
  const job = (holder: string): LeasedJob => ({
    name: "sweep",
    periodMs: 600_000,
    run: (signal) => {
      runs++;
      if (holder === "a") {
        return new Promise((_, reject) =>
          signal.addEventListener("abort", () => reject(signal.reason))
        );
      }
      if (fail) {
        fail = false;
        return Promise.reject(new Error("KV hiccup"));
      }
      return Promise.resolve();
    },
  });
  const options = {
    store,
    now: () => clock.now,
    leaseMs: 30_000,
    retryMs: 5_000,
    jitterMs: 0,
    log: () => {},
  };
  const a = new LeasedJobRunner({
    ...options,
    jobs: [job("a")],
    holder: "a",
    setTimer: clock.timers(),
  });
  const b = new LeasedJobRunner({
    ...options,
    jobs: [job("b")],
    holder: "b",
    setTimer: clock.timers(),
  });
  try {
    a.start();
    await clock.advance(0);
    await a.stop();
    const stopped = await store.state("sweep");
    assertEquals(stopped?.holder, "");
    assertEquals(stopped?.nextRunAt, 0, "still due");
    // B takes it at once (no lease to wait out); its run fails, and is retried 5 s later.
    await b.runDue();
    assertEquals(runs, 2);
    assertEquals((await store.state("sweep"))?.nextRunAt, clock.now + 5_000);
    await b.runDue();
    assertEquals(runs, 2, "retried before its retry time");
    await clock.advance(5_000);
    await b.runDue();
    assertEquals(runs, 3);
    const log = await store.runs("sweep");
    assertEquals(log.map((r) => `${r.holder}:${r.outcome}`), ["a:stopped", "b:failed", "b:done"]);
    assertEquals((await store.state("sweep"))?.nextRunAt, clock.now + 600_000);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    kv.close();
  }
});
