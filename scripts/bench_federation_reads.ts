/**
 * `deno task bench:federation-reads`: what a room-scoped federation read costs in a large room.
 * Server a.test holds a room of MEMBERS joined users spread over SERVERS servers (plus b.test's
 * Bob), and b.test asks `GET /_matrix/federation/v1/event/{eventId}` for one of its messages,
 * over the in-process test network (the whole route: X-Matrix signature check, the room's ACL,
 * the origin's access check, the read pipeline's server read; `:memory:` KV). Then the same
 * for `/state_ids` at that message (whose answer itself names every member's event, so the
 * access check is a smaller part of it) and for `/query/directory`, which lists the servers.
 *
 * Before the room servers projection (`roomid_servers`), the access check ("the origin has a
 * joined user") and the directory's server list read every joined member; this measures what
 * that cost and what is left. Each run builds a fresh room; prints each run's median latency
 * and the median of the runs.
 *
 * Flags: --members=N (default 5000), --servers=N (default 50), --requests=N per run (default
 * 300; a sixth of that for /state_ids), --runs=N (default 3).
 */
import { buildEvent } from "../domain/protocol/event_builder.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { startNetwork } from "../tests/federation/in_process_network.ts";
import { markdownTable, summarise } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const MEMBERS = flag("members", 5000);
const SERVERS = flag("servers", 50);
const REQUESTS = flag("requests", 300);
const RUNS = flag("runs", 3);
const WARMUP = 20;
/** Member events per append (one commit each, within KV's 1,000 mutations). */
const PER_APPEND = 50;
const enc = encodeURIComponent;

function median(values: readonly number[]): number {
  return summarise(values).median;
}

/** Median latency in ms of each request measured. */
interface RunResult {
  event: number;
  stateIds: number;
  directory: number;
}

/** One run: a fresh room of MEMBERS members; returns the median latency of each read in ms. */
async function run(): Promise<RunResult> {
  const net = await startNetwork(["a.test", "b.test"], {
    env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" },
  });
  try {
    const a = net.servers["a.test"];
    const alice = await a.register("alice");
    const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat", room_alias_name: "big" },
    });
    if (created.status !== 200) throw new Error(`createRoom: ${JSON.stringify(created.body)}`);
    const roomId: string = created.body.room_id;
    const store = a.deps.eventStore;

    // The members' joins, built on the room's state and chained, appended as a resident server
    // holds remote joins (their signatures are not what is measured; a.test's key signs them).
    const head = (await store.roomHead(roomId))!;
    const version = roomVersion(head.roomVersion)!;
    const state = await store.currentState(roomId);
    let prev = (await store.getEvents(head.forwardExtremities)).get(head.forwardExtremities[0])!;
    let prevRef = { eventId: prev.eventId, depth: prev.pdu.depth };
    const users = Array.from(
      { length: MEMBERS },
      (_, i) => `@user${i}:s${i % SERVERS}.test`,
    );
    users.push("@bob:b.test");
    for (let start = 0; start < users.length; start += PER_APPEND) {
      const events: NewEvent[] = [];
      for (const userId of users.slice(start, start + PER_APPEND)) {
        const built = await buildEvent({
          version,
          roomId,
          sender: userId,
          type: "m.room.member",
          stateKey: userId,
          content: { membership: "join" },
          prevEvents: [prevRef],
          currentState: (key) => {
            const id = state.get(key);
            return id === undefined ? undefined : { eventId: id };
          },
          serverName: "a.test",
          signingKey: a.deps.keyring.current,
        });
        events.push({ eventId: built.eventId, pdu: built.pdu, status: "accepted" });
        prevRef = { eventId: built.eventId, depth: built.pdu.depth };
      }
      await store.append({ roomId, events });
    }
    const joined = await store.members(roomId, ["join"]);
    if (joined.length !== users.length + 1) throw new Error(`${joined.length} members joined`);

    const sent = await a.request(
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t1`,
      { token: alice.accessToken, body: { msgtype: "m.text", body: "hello" } },
    );
    if (sent.status !== 200) throw new Error(`send: ${JSON.stringify(sent.body)}`);
    prev = (await store.getEvent(sent.body.event_id))!;

    const fromB = net.transportFor("b.test");
    const time = async (
      path: string,
      check: (body: JsonObject) => boolean,
      requests = REQUESTS,
    ) => {
      const samples: number[] = [];
      for (let i = 0; i < WARMUP + requests; i++) {
        const t0 = performance.now();
        const res = await fromB.request({ method: "GET", destination: "a.test", path });
        const ms = performance.now() - t0;
        if (res.status !== 200 || !check(res.body as JsonObject)) {
          throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
        }
        if (i >= WARMUP) samples.push(ms);
      }
      return median(samples);
    };
    const event = await time(
      `/_matrix/federation/v1/event/${enc(prev.eventId)}`,
      (body) => (body.pdus as JsonObject[]).length === 1,
    );
    const stateIds = await time(
      `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(prev.eventId)}`,
      (body) => (body.pdu_ids as string[]).length > users.length,
      Math.max(1, Math.round(REQUESTS / 6)),
    );
    const directory = await time(
      `/_matrix/federation/v1/query/directory?room_alias=${enc("#big:a.test")}`,
      (body) => (body.servers as string[]).length === SERVERS + 2,
    );
    return { event, stateIds, directory };
  } finally {
    await net.close();
  }
}

const runs: RunResult[] = [];
for (let i = 0; i < RUNS; i++) {
  const result = await run();
  runs.push(result);
  console.log(
    `run ${i + 1}: /event ${result.event.toFixed(2)} ms, /state_ids ${
      result.stateIds.toFixed(2)
    } ms, /query/directory ${result.directory.toFixed(2)} ms`,
  );
}
const row = (name: string, pick: (r: RunResult) => number) => [
  name,
  median(runs.map(pick)).toFixed(2),
  runs.map((r) => pick(r).toFixed(2)).join(", "),
];
console.log(
  `\nFederation reads in a room of ${MEMBERS.toLocaleString("en-US")} members over ${SERVERS} ` +
    `servers (+ a.test, b.test), in-process network, :memory: KV\n`,
);
console.log(markdownTable(["request", "median ms (of runs)", "runs' medians ms"], [
  row("GET /event/{eventId}", (r) => r.event),
  row("GET /state_ids/{roomId}", (r) => r.stateIds),
  row("GET /query/directory", (r) => r.directory),
]));
