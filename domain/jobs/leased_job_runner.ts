/**
 * Background jobs that a fleet of processes on one KV database runs once each period, by
 * whichever process is there: every process runs this runner with the same jobs, and a job
 * runs only in the process that takes its lease (domain/ports/job_lease_store.ts). The lease is
 * taken under a versionstamp check when the job is due (`nextRunAt`, kept in KV, so the fleet
 * shares one schedule), renewed while the run lasts (every third of the lease) and given back
 * with the next due time when it ends. A process that dies mid-run leaves the lease to run
 * out; then another process takes the job for the same due time (the job's work must resume
 * from what KV holds, as every job here does). A run whose renewal fails (the process stalled
 * past its lease and another took over) is aborted through its signal, and its release is
 * refused, so it never moves the schedule the new holder owns.
 *
 * Between runs each process keeps one timer per job, set to when the job is next due or when
 * the lease it saw runs out; it only reads KV (one read), the work runs in one process.
 */
import type { JobLease, JobLeaseStore, JobOutcome } from "../ports/job_lease_store.ts";

/** A job the runner schedules. */
export interface LeasedJob {
  /** Unique within the fleet: the lease and the schedule are kept under it. */
  readonly name: string;
  /** Time from one run's due time to the next (ms). */
  readonly periodMs: number;
  /**
   * One run. It must resume what a run cut short left (a process may die at any point) and
   * should stop soon after `signal` aborts (the process stops, or the lease was lost).
   */
  run(signal: AbortSignal): Promise<void>;
}

/** Calls `callback` after `ms`; returns a cancel function (tests pass a fake clock's). */
export type SetTimer = (callback: () => void, ms: number) => () => void;

/** How the runner is built; all but `store` and `jobs` have defaults. */
export interface LeasedJobRunnerOptions {
  store: JobLeaseStore;
  jobs: readonly LeasedJob[];
  /** This process's name on leases; random by default. */
  holder?: string;
  now?: () => number;
  setTimer?: SetTimer;
  /** How long a lease holds without renewal (`TESSERA_JOB_LEASE_MS`); default a minute. */
  leaseMs?: number;
  /** Delay before a failed run is tried again (at most the job's period); default a minute. */
  retryMs?: number;
  /**
   * Up to this much random delay on each look, so a fleet's processes do not all try to take a
   * job at the same instant (the first takes it; the rest then only read); default the smaller
   * of 1 s and a twentieth of the lease.
   */
  jitterMs?: number;
  log?: (message: string, ...details: unknown[]) => void;
}

/** The default lease: renewed every 20 s, so a dead holder's job waits at most a minute. */
export const DEFAULT_JOB_LEASE_MS = 60_000;

/** Longest delay one timer takes (setTimeout's limit is 2^31 - 1 ms); it re-arms after. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const defaultSetTimer: SetTimer = (callback, ms) => {
  const id = setTimeout(callback, ms);
  return () => clearTimeout(id);
};

/** Runs leased jobs in this process when their turn is here; see the module comment. */
export class LeasedJobRunner {
  readonly #store: JobLeaseStore;
  readonly #jobs: readonly LeasedJob[];
  readonly #holder: string;
  readonly #now: () => number;
  readonly #setTimer: SetTimer;
  readonly #leaseMs: number;
  readonly #retryMs: number;
  readonly #jitterMs: number;
  readonly #log: (message: string, ...details: unknown[]) => void;
  #started = false;
  /** Per job: the cancel function of its timer. */
  readonly #timers = new Map<string, () => void>();
  /** Per job: the check (and run) under way in this process. */
  readonly #checks = new Map<string, Promise<number>>();
  /** Per job: the abort controller of its run here. */
  readonly #runs = new Map<string, AbortController>();

  /** A runner over `options.jobs`; call `start`, or drive it with `runDue` (tests). */
  constructor(options: LeasedJobRunnerOptions) {
    const names = new Set(options.jobs.map((job) => job.name));
    if (names.size !== options.jobs.length) throw new Error("leased jobs need distinct names");
    this.#store = options.store;
    this.#jobs = options.jobs;
    this.#holder = options.holder ?? crypto.randomUUID();
    this.#now = options.now ?? Date.now;
    this.#setTimer = options.setTimer ?? defaultSetTimer;
    this.#leaseMs = options.leaseMs ?? DEFAULT_JOB_LEASE_MS;
    this.#retryMs = options.retryMs ?? 60_000;
    this.#jitterMs = options.jitterMs ?? Math.min(1_000, Math.floor(this.#leaseMs / 20));
    this.#log = options.log ?? console.warn;
  }

  /** This process's name on leases and in the run log. */
  get holder(): string {
    return this.#holder;
  }

  /** Look at every job now, then whenever one is next due or a lease seen runs out. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const job of this.#jobs) this.#arm(job, 0);
  }

  /**
   * Stop: no new runs; runs under way are aborted and awaited, and their leases given back
   * with the job still due, so another process takes it at once rather than after expiry.
   */
  async stop(): Promise<void> {
    this.#started = false;
    for (const cancel of this.#timers.values()) cancel();
    this.#timers.clear();
    for (const controller of this.#runs.values()) controller.abort(new Error("stopping"));
    await Promise.allSettled(this.#checks.values());
  }

  /**
   * Look at every job once: run here each one that is due and not leased; resolves when those
   * runs end, with when each job should be looked at next (ms since the epoch).
   */
  async runDue(): Promise<Map<string, number>> {
    const next = await Promise.all(this.#jobs.map((job) => this.#check(job)));
    return new Map(this.#jobs.map((job, i) => [job.name, next[i]]));
  }

  #arm(job: LeasedJob, at: number): void {
    this.#timers.get(job.name)?.();
    const jitter = Math.floor(Math.random() * this.#jitterMs);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#now()) + jitter);
    this.#timers.set(
      job.name,
      this.#setTimer(() => {
        this.#timers.delete(job.name);
        this.#check(job).then((next) => {
          if (this.#started) this.#arm(job, next);
        });
      }, delay),
    );
  }

  /** One look at `job` (and its run, when taken); when to look again. Never rejects. */
  #check(job: LeasedJob): Promise<number> {
    const running = this.#checks.get(job.name);
    if (running) return running;
    const check = this.#takeAndRun(job).finally(() => this.#checks.delete(job.name));
    this.#checks.set(job.name, check);
    return check;
  }

  async #takeAndRun(job: LeasedJob): Promise<number> {
    const now = this.#now();
    let result;
    try {
      result = await this.#store.acquire(job.name, this.#holder, now, now + this.#leaseMs);
    } catch (error) {
      this.#log("jobs: reading the lease failed", job.name, error);
      return now + Math.min(this.#retryMs, this.#leaseMs);
    }
    if (result.taken) return await this.#run(job, result.taken);
    const state = result.state;
    // Free and due but taken by nobody: the commit lost a race with a release; look again.
    if (!state) return now;
    return state.leaseUntil > now ? state.leaseUntil : state.nextRunAt;
  }

  async #run(job: LeasedJob, taken: JobLease): Promise<number> {
    const controller = new AbortController();
    this.#runs.set(job.name, controller);
    let lease = taken;
    let lost = false;
    let ended = false;
    let cancelRenewal = () => {};
    let renewal: Promise<void> = Promise.resolve();
    const renewEvery = Math.max(1, Math.floor(this.#leaseMs / 3));
    const armRenewal = () => {
      cancelRenewal = this.#setTimer(() => {
        renewal = renew();
      }, renewEvery);
    };
    const renew = async () => {
      try {
        const renewed = await this.#store.renew(lease, this.#now() + this.#leaseMs);
        if (!renewed) {
          lost = true;
          controller.abort(new Error(`lease of ${job.name} lost`));
          return;
        }
        lease = renewed;
      } catch (error) {
        this.#log("jobs: renewing the lease failed", job.name, error);
        // Another try must land before the lease runs out; otherwise stop running the job.
        if (this.#now() + renewEvery >= lease.state.leaseUntil) {
          lost = true;
          controller.abort(new Error(`lease of ${job.name} not renewed`));
          return;
        }
      }
      if (!ended) armRenewal();
    };
    armRenewal();

    let outcome: JobOutcome = "done";
    try {
      await job.run(controller.signal);
    } catch (error) {
      if (controller.signal.aborted) outcome = "stopped";
      else {
        outcome = "failed";
        this.#log("jobs: run failed", job.name, error);
      }
    } finally {
      ended = true;
      cancelRenewal();
      this.#runs.delete(job.name);
    }
    await renewal;
    const finishedAt = this.#now();
    if (lost) return finishedAt;
    const dueAt = taken.state.nextRunAt;
    let nextRunAt = dueAt;
    if (outcome === "done") {
      // One run per period; a fleet that was down (or a run longer than the period) runs once
      // to catch up, not once per missed period.
      nextRunAt = dueAt + job.periodMs;
      if (nextRunAt <= finishedAt) nextRunAt = finishedAt + job.periodMs;
    } else if (outcome === "failed") {
      nextRunAt = finishedAt + Math.min(this.#retryMs, job.periodMs);
    }
    try {
      if (await this.#store.release(lease, nextRunAt, { outcome, finishedAt })) return nextRunAt;
    } catch (error) {
      this.#log("jobs: giving the lease back failed", job.name, error);
    }
    // Lost (or unknown): the state tells when to look again.
    return finishedAt;
  }
}
