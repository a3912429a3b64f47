/**
 * The server's leased jobs: what each run does, and that the remote-join resume leaves a join a
 * live process may still be making to that process.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import {
  backgroundJobs,
  LIVE_JOIN_GRACE_MS,
  RESUME_PERIOD_MS,
  TYPING_EXPIRY_PERIOD_MS,
} from "../../domain/jobs/background_jobs.ts";
import { RemoteJoiner } from "../../domain/federation/remote_join.ts";
import type { PendingJoinRecord } from "../../domain/ports/pending_join_store.ts";
import type { EventStore } from "../../domain/ports/event_store.ts";
import { FederationUnreachable } from "../../domain/ports/federation_transport.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../domain/protocol/signing.ts";

Deno.test("background jobs: resuming deactivations and remote joins, each run with its signal", async () => {
  const calls: unknown[] = [];
  const jobs = backgroundJobs({
    deactivations: {
      resume: (signal) => {
        calls.push(["deactivations", signal]);
        return Promise.resolve(0);
      },
    },
    remoteJoins: {
      resumePending: (options) => {
        calls.push(["joins", options]);
        return Promise.resolve();
      },
    },
    typing: {
      expireDue: (signal) => {
        calls.push(["typing", signal]);
        return Promise.resolve(0);
      },
    },
    now: () => 1_000_000,
  });
  assertEquals(jobs.map((j) => [j.name, j.periodMs]), [
    ["resume-deactivations", RESUME_PERIOD_MS],
    ["resume-remote-joins", RESUME_PERIOD_MS],
    ["typing-expiry", TYPING_EXPIRY_PERIOD_MS],
  ]);
  const signal = new AbortController().signal;
  for (const job of jobs) await job.run(signal);
  assertEquals(calls, [
    ["deactivations", signal],
    ["joins", { startedBefore: 1_000_000 - LIVE_JOIN_GRACE_MS, signal }],
    ["typing", signal],
  ]);
});

Deno.test("background jobs: the probe job is there only when configured, and stops on abort", async () => {
  const idle = { resume: () => Promise.resolve(0) };
  const joins = { resumePending: () => Promise.resolve() };
  const typing = { expireDue: () => Promise.resolve(0) };
  const jobs = backgroundJobs({
    deactivations: idle,
    remoteJoins: joins,
    typing,
    probe: { runMs: 3_600_000, periodMs: 5_000 },
  });
  const probe = jobs.find((j) => j.name === "probe");
  assert(probe);
  assertEquals(probe.periodMs, 5_000);
  const controller = new AbortController();
  const run = probe.run(controller.signal);
  controller.abort(new Error("stopping"));
  await assertRejects(() => run, /stopping/);
  const quick = backgroundJobs({
    deactivations: idle,
    remoteJoins: joins,
    typing,
    probe: { runMs: 1, periodMs: 5_000 },
  });
  await quick.find((j) => j.name === "probe")!.run(new AbortController().signal);
  assertEquals(backgroundJobs({ deactivations: idle, remoteJoins: joins, typing }).length, 3);
});

Deno.test("remote joins: the resume job leaves a join started after startedBefore alone", async () => {
  const record = (userId: string, startedAt: number): PendingJoinRecord => ({
    roomId: "!room:remote.test",
    userId,
    roomVersion: "10",
    joinEventId: `$join-${userId}`,
    joinPdu: {} as PendingJoinRecord["joinPdu"],
    servers: ["remote.test"],
    startedAt,
  });
  const records = [record("@old:local.test", 1_000), record("@new:local.test", 9_000)];
  const asked: string[] = [];
  const joiner = new RemoteJoiner({
    store: {} as EventStore,
    transport: {
      request: (request) => {
        asked.push(request.path);
        return Promise.reject(new FederationUnreachable("network", "remote.test", "down"));
      },
    },
    serverName: "local.test",
    signingKey: await signingKeyFromSeed(generateSigningSeed(), "ed25519:test"),
    verifySignatures: () => Promise.resolve({ ok: true as const }),
    pendingJoins: {
      put: () => Promise.resolve(),
      get: () => Promise.resolve(null),
      delete: () => Promise.resolve(),
      list: () => Promise.resolve(records),
    },
  });
  const warn = console.warn;
  console.warn = () => {};
  try {
    await joiner.resumePending({ startedBefore: 5_000 });
  } finally {
    console.warn = warn;
  }
  // Only the old join was tried again (its send_join, which failed: the record stays).
  assertEquals(asked.length, 1);
  assert(asked[0].includes(encodeURIComponent("$join-@old:local.test")), asked[0]);
  // An aborted run tries nothing.
  const stopped = new AbortController();
  stopped.abort();
  await joiner.resumePending({ signal: stopped.signal });
  assertEquals(asked.length, 1);
});
