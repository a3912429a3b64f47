/**
 * The server's leased background jobs (domain/jobs/leased_job_runner.ts): work that runs
 * outside any request, once per period by one process of the fleet. Before, every process ran
 * these once at its own start, so a fleet ran them once per process (and a process started
 * while another was mid-way ran them beside it); now the first process up runs them at once
 * and the fleet once per period after.
 *
 * What else runs outside a request, and why it needs no job here:
 * - the federation and push outbox senders (domain/outbox/outbox_worker.ts): per-destination
 *   leases in KV already; woken by the outbox's wake key and by a timer for the next retry due;
 * - typing expiry's timer (domain/ephemeral/typing_service.ts): only in the process that wrote
 *   the typing, for the rooms it wrote (the fast path); the `typing-expiry` job below clears
 *   what a dead process's timer would have;
 * - expired UIA sessions, login and OpenID tokens, 3PID sessions, one-time-key claim markers,
 *   other servers' to-device and transaction records: written with KV `expireIn`, so KV drops
 *   them; access and refresh tokens are one pair per device, replaced on refresh and deleted with
 *   it, so they cannot pile up.
 */
import type { LeasedJob } from "./leased_job_runner.ts";

/** How often the fleet looks for work a dead process left (pending deactivations and joins). */
export const RESUME_PERIOD_MS = 10 * 60_000;
/**
 * A pending join this recent may still be under way in a live process (a large room's join
 * takes many commits); the resume job leaves it to that process.
 */
export const LIVE_JOIN_GRACE_MS = 2 * 60_000;
/**
 * How often the fleet clears typing a dead process's timer would have cleared (readers hide
 * expired typing at once; this makes waiting syncs hear that it stopped).
 */
export const TYPING_EXPIRY_PERIOD_MS = 15_000;

/**
 * How often the fleet drops the chunks of media uploads that never finished (their pending
 * records expire a day after they began: kv/media_store.ts).
 */
export const MEDIA_CLEANUP_PERIOD_MS = 60 * 60_000;

/** What the jobs work on. */
export interface BackgroundJobDeps {
  /** Deactivations a dead process or a failed hook left pending. */
  deactivations: { resume(signal?: AbortSignal): Promise<number> };
  /** Joins of remote rooms a dead process left half stored. */
  remoteJoins: {
    resumePending(options: { startedBefore?: number; signal?: AbortSignal }): Promise<void>;
  };
  /** Typing whose writer's timer is gone. */
  typing: { expireDue(signal?: AbortSignal): Promise<number> };
  /** Media uploads a dead process (or a broken connection) left half written. */
  media?: { dropAbandonedWrites(signal?: AbortSignal): Promise<number> };
  /** The probe job's timing (`config.jobs.probe`); none when absent. */
  probe?: { runMs: number; periodMs: number };
  now?: () => number;
}

/** The jobs every process of the fleet registers with its runner. */
export function backgroundJobs(deps: BackgroundJobDeps): LeasedJob[] {
  const now = deps.now ?? Date.now;
  const jobs: LeasedJob[] = [
    {
      name: "resume-deactivations",
      periodMs: RESUME_PERIOD_MS,
      run: async (signal) => {
        await deps.deactivations.resume(signal);
      },
    },
    {
      name: "resume-remote-joins",
      periodMs: RESUME_PERIOD_MS,
      run: (signal) =>
        deps.remoteJoins.resumePending({ startedBefore: now() - LIVE_JOIN_GRACE_MS, signal }),
    },
    {
      name: "typing-expiry",
      periodMs: TYPING_EXPIRY_PERIOD_MS,
      run: async (signal) => {
        await deps.typing.expireDue(signal);
      },
    },
  ];
  const media = deps.media;
  if (media) {
    jobs.push({
      name: "media-abandoned-writes",
      periodMs: MEDIA_CLEANUP_PERIOD_MS,
      run: async (signal) => {
        await media.dropAbandonedWrites(signal);
      },
    });
  }
  const probe = deps.probe;
  if (probe) {
    // Does nothing but hold its lease for a while each period; the run log shows who ran which
    // period, which is how the fleet tests check leases across killed processes.
    jobs.push({
      name: "probe",
      periodMs: probe.periodMs,
      run: (signal) => abortableDelay(probe.runMs, signal),
    });
  }
  return jobs;
}

/** Resolve after `ms`, or reject with the abort reason once `signal` aborts. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
