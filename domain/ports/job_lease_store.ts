/**
 * The storage port of leased background jobs (domain/jobs/leased_job_runner.ts): one record per
 * job name holding who runs it until when (the lease) and when it is next due, changed only
 * under a versionstamp check, so of several processes only one takes a due job, and a job
 * whose holder died is taken over once its lease runs out. Every run is also logged (kept a
 * day), so an operator, or a test, can see which process ran which period.
 */

/** A job's shared state. */
export interface JobState {
  /** The process running it, and until when (ms since the epoch); "" and 0 when free. */
  holder: string;
  leaseUntil: number;
  /** When the job is next due (ms since the epoch; 0: at once). */
  nextRunAt: number;
  /** Runs started so far (the number of the current or last run). */
  run: number;
}

/** A lease held on a job: its state as written, passed back to renew or release it. */
export interface JobLease {
  job: string;
  state: JobState;
  /** The versionstamp of the commit that wrote `state` (renew and release check it). */
  versionstamp: string;
}

/** How a run ended. */
export type JobOutcome = "done" | "failed" | "stopped";

/** One run in a job's log. */
export interface JobRunRecord {
  job: string;
  /** The run's number (JobState.run when it started). */
  run: number;
  holder: string;
  /** The `nextRunAt` it was started for: two runs with one `dueAt` mean a takeover or a retry. */
  dueAt: number;
  startedAt: number;
  /** Absent while running, and forever when its holder died or lost the lease. */
  finishedAt?: number;
  outcome?: JobOutcome;
}

/** What `acquire` found: the lease taken, or the state that kept it (when to look again). */
export type AcquireResult =
  | { taken: JobLease }
  | { taken?: undefined; state: JobState | null };

/** Leases and schedules of background jobs. */
export interface JobLeaseStore {
  /**
   * Take `job` for `holder` until `leaseUntil` if it is due (`nextRunAt <= now`) and no lease
   * (anyone's) is running, logging the run as started; otherwise (or when another process took
   * it in between) the state as read.
   */
  acquire(job: string, holder: string, now: number, leaseUntil: number): Promise<AcquireResult>;
  /** Extend a held lease to `leaseUntil`; null when it was lost (taken over after expiry). */
  renew(lease: JobLease, leaseUntil: number): Promise<JobLease | null>;
  /**
   * Give the lease back, the job next due at `nextRunAt`, and log the run's end; false when the
   * lease was lost (then nothing is written: the new holder owns the schedule).
   */
  release(
    lease: JobLease,
    nextRunAt: number,
    end: { outcome: JobOutcome; finishedAt: number },
  ): Promise<boolean>;
  /** The job's state; null before its first run. */
  state(job: string): Promise<JobState | null>;
  /** The job's logged runs, oldest first (at most `limit`). */
  runs(job: string, limit?: number): Promise<JobRunRecord[]>;
}
