/**
 * Leased background jobs in KV (domain/ports/job_lease_store.ts): `job_state/job` holds the
 * lease and the schedule, rewritten only under a check on the versionstamp it was read at, so
 * two processes that both find a job due cannot both take it; `jobrun_record/job/run` logs each
 * run in the commits that take and give back the lease, with an expiry (a day) so the log
 * does not grow without bound.
 */
import type {
  AcquireResult,
  JobLease,
  JobLeaseStore,
  JobOutcome,
  JobRunRecord,
  JobState,
} from "../domain/ports/job_lease_store.ts";
import { jobKeys } from "./schema.ts";

/** How long a run stays in the log. */
const RUN_LOG_LIFETIME_MS = 24 * 60 * 60 * 1000;

/** The KV adapter of the job lease port. */
export class KvJobLeaseStore implements JobLeaseStore {
  /** Leases and run logs in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async acquire(
    job: string,
    holder: string,
    now: number,
    leaseUntil: number,
  ): Promise<AcquireResult> {
    const current = await this.kv.get<JobState>(jobKeys.state(job));
    const state = current.value;
    // A running lease binds its own holder too: one process never runs a job twice at once.
    if (state && (state.leaseUntil > now || state.nextRunAt > now)) return { state };
    const next: JobState = {
      holder,
      leaseUntil,
      nextRunAt: state?.nextRunAt ?? 0,
      run: (state?.run ?? 0) + 1,
    };
    const record: JobRunRecord = {
      job,
      run: next.run,
      holder,
      dueAt: next.nextRunAt,
      startedAt: now,
    };
    const result = await this.kv.atomic()
      .check(current)
      .set(jobKeys.state(job), next)
      .set(jobKeys.run(job, next.run), record, { expireIn: RUN_LOG_LIFETIME_MS })
      .commit();
    if (result.ok) return { taken: { job, state: next, versionstamp: result.versionstamp } };
    // Another process took it (or released it) in between: report what it wrote.
    return { state: (await this.kv.get<JobState>(jobKeys.state(job))).value };
  }

  async renew(lease: JobLease, leaseUntil: number): Promise<JobLease | null> {
    const key = jobKeys.state(lease.job);
    const next: JobState = { ...lease.state, leaseUntil };
    const result = await this.kv.atomic()
      .check({ key, versionstamp: lease.versionstamp })
      .set(key, next)
      .commit();
    return result.ok ? { job: lease.job, state: next, versionstamp: result.versionstamp } : null;
  }

  async release(
    lease: JobLease,
    nextRunAt: number,
    end: { outcome: JobOutcome; finishedAt: number },
  ): Promise<boolean> {
    const key = jobKeys.state(lease.job);
    const runKey = jobKeys.run(lease.job, lease.state.run);
    const logged = await this.kv.get<JobRunRecord>(runKey);
    const free: JobState = { holder: "", leaseUntil: 0, nextRunAt, run: lease.state.run };
    const op = this.kv.atomic()
      .check({ key, versionstamp: lease.versionstamp })
      .set(key, free);
    // The log entry may have expired under a run of more than a day; the state still goes.
    if (logged.value) {
      op.set(runKey, { ...logged.value, ...end }, { expireIn: RUN_LOG_LIFETIME_MS });
    }
    return (await op.commit()).ok;
  }

  async state(job: string): Promise<JobState | null> {
    return (await this.kv.get<JobState>(jobKeys.state(job))).value;
  }

  async runs(job: string, limit = 1000): Promise<JobRunRecord[]> {
    const out: JobRunRecord[] = [];
    const entries = this.kv.list<JobRunRecord>({ prefix: jobKeys.runPrefix(job) }, { limit });
    for await (const entry of entries) out.push(entry.value);
    return out;
  }
}
