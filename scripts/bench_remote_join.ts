/**
 * `deno task bench:remote-join`: joining a remote room whose state holds N members (default
 * 5,000; target under 3 s). The resident server is played by a transport answering make_join
 * and send_join from a room built as signed events (tests/domain/federation/remote_room_builder.ts);
 * the joining side is the real RemoteJoiner over a KvEventStore: the whole answer checked
 * (signatures, hashes, auth of every event), then outliers, the staged state and the join,
 * on `:memory:` and on a KV file (one disk sync per commit). Reports the time of each join,
 * its phases, and the peak resident memory sampled during it (the process also holds the
 * resident's room, built before: "RSS growth" is the join's own share).
 *
 * Flags: --members=N (default 5000), --runs=N (default 3).
 */
import { RemoteJoiner } from "../domain/federation/remote_join.ts";
import { membershipTemplate } from "../domain/federation/membership_template.ts";
import type { JsonValue } from "../domain/protocol/json.ts";
import type {
  FederationRequest,
  FederationResponse,
} from "../domain/ports/federation_transport.ts";
import type { PendingJoinRecord, PendingJoinStore } from "../domain/ports/pending_join_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { KvPendingJoinStore } from "../kv/pending_join_store.ts";
import {
  RemoteRoom,
  testServer,
  testVerifier,
} from "../tests/domain/federation/remote_room_builder.ts";
import { markdownTable } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const MEMBERS = flag("members", 5000);
const RUNS = flag("runs", 3);
const RESIDENT = await testServer("resident.test", 1);
const JOINER = await testServer("joiner.test", 2);
const CREATOR = "@creator:resident.test";
const USER = "@bench:joiner.test";

console.log(`Building a room of ${MEMBERS} members on the resident side...`);
const room = await RemoteRoom.create("10", RESIDENT, CREATOR);
await room.addMembers(MEMBERS);
const state = room.statePdus();
const authChain = room.authChainPdus();
console.log(`state: ${state.length} events, auth chain: ${authChain.length} events`);

/** The resident server: make_join from the room's state, send_join with state and auth chain. */
function resident(request: FederationRequest): Promise<FederationResponse> {
  if (request.path.startsWith("/_matrix/federation/v1/make_join/")) {
    const last = room.events.at(-1)!;
    const key = (type: string, k: string) => room.state.get(`${type}\u0000${k}`);
    const auth = [
      key("m.room.create", ""),
      key("m.room.power_levels", ""),
      key("m.room.join_rules", ""),
    ].filter((id): id is string => id !== undefined).map((eventId) => ({ eventId }));
    const template = membershipTemplate({
      version: room.version,
      roomId: room.roomId,
      userId: USER,
      membership: "join",
      prevEvents: [{ eventId: last.eventId }],
      depth: last.pdu.depth + 1,
      authEvents: auth,
      origin: RESIDENT.name,
      originServerTs: Date.now(),
    });
    return Promise.resolve({ status: 200, body: { room_version: "10", event: template } });
  }
  if (request.path.startsWith("/_matrix/federation/v2/send_join/")) {
    // A real answer crosses the wire as JSON: parse a serialised copy, as the client would.
    const body = JSON.parse(JSON.stringify({
      origin: RESIDENT.name,
      state,
      auth_chain: authChain,
      event: request.body,
    })) as JsonValue;
    return Promise.resolve({ status: 200, body });
  }
  return Promise.resolve({ status: 404, body: { errcode: "M_UNRECOGNIZED", error: "" } });
}

/** Counts what each phase took by wrapping the store's calls. */
function timed<T extends object>(target: T, name: keyof T, phases: Map<string, number>): void {
  const original = (target[name] as (...args: unknown[]) => Promise<unknown>).bind(target);
  (target as Record<keyof T, unknown>)[name] = async (...args: unknown[]) => {
    const start = performance.now();
    try {
      return await original(...args);
    } finally {
      phases.set(String(name), (phases.get(String(name)) ?? 0) + performance.now() - start);
    }
  };
}

async function joinOnce(path: string): Promise<Record<string, string>> {
  const kv = await Deno.openKv(path);
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const phases = new Map<string, number>();
    timed(store, "storeOutliers", phases);
    timed(store, "stageState", phases);
    timed(store, "append", phases);
    const pendingJoins: PendingJoinStore = new KvPendingJoinStore(kv);
    const joiner = new RemoteJoiner({
      store,
      transport: { request: resident },
      serverName: JOINER.name,
      signingKey: await signingKeyFromSeed(new Uint8Array(32).fill(2), "ed25519:t1"),
      verifySignatures: testVerifier([RESIDENT, JOINER]),
      pendingJoins,
    });
    const baseline = Deno.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }, 5);
    const start = performance.now();
    await joiner.join({ userId: USER, roomId: room.roomId, servers: [RESIDENT.name] });
    const total = performance.now() - start;
    clearInterval(sampler);
    peak = Math.max(peak, Deno.memoryUsage().rss);
    const members = await store.members(room.roomId, ["join"]);
    if (members.length !== MEMBERS + 2) {
      throw new Error(`expected ${MEMBERS + 2} joined members, found ${members.length}`);
    }
    const stored = (phases.get("storeOutliers") ?? 0) + (phases.get("stageState") ?? 0) +
      (phases.get("append") ?? 0);
    const pending: PendingJoinRecord[] = await pendingJoins.list();
    if (pending.length !== 0) throw new Error("the pending-join record was left behind");
    return {
      total: `${(total / 1000).toFixed(2)} s`,
      "checks + requests": `${((total - stored) / 1000).toFixed(2)} s`,
      outliers: `${((phases.get("storeOutliers") ?? 0) / 1000).toFixed(2)} s`,
      "staged state": `${((phases.get("stageState") ?? 0) / 1000).toFixed(2)} s`,
      "join append": `${((phases.get("append") ?? 0) / 1000).toFixed(2)} s`,
      "peak RSS": `${Math.round(peak / 2 ** 20)} MiB`,
      "RSS growth": `${Math.round((peak - baseline) / 2 ** 20)} MiB`,
    };
  } finally {
    kv.close();
  }
}

const rows: string[][] = [];
for (const where of [":memory:", "file"]) {
  for (let run = 1; run <= RUNS; run++) {
    const dir = where === "file" ? await Deno.makeTempDir({ prefix: "tessera-bench-join-" }) : "";
    try {
      const result = await joinOnce(where === "file" ? `${dir}/bench.kv` : ":memory:");
      rows.push([where, String(run), ...Object.values(result)]);
      console.log(where, run, result);
    } finally {
      if (dir) await Deno.remove(dir, { recursive: true });
    }
  }
}
console.log(
  `\nJoining a remote room of ${MEMBERS} members (state ${state.length}, auth chain ${authChain.length}):\n`,
);
console.log(markdownTable(
  [
    "KV",
    "run",
    "total",
    "checks + requests",
    "outliers",
    "staged state",
    "join append",
    "peak RSS",
    "RSS growth",
  ],
  rows,
));
