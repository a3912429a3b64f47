/**
 * `deno task bench:relations`: what the relation projections (kv/relation_projection.ts) cost
 * per appended event: KV mutations per commit (counted by wrapping `kv.atomic`) and append
 * time, for plain messages, thread replies, edits and reactions, one event per append,
 * on `:memory:` and on a KV file (one disk sync per commit). Events are unsigned fixtures, so
 * the figures are the store's alone.
 *
 * Flags: --events=N (per kind and run, default 400), --runs=N (default 3).
 */
import type { JsonObject } from "../domain/protocol/json.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { markdownTable } from "./bench_stats.ts";

const ROOM = "!bench:bench.test";
const USER = "@alice:bench.test";

type Kind = "message" | "thread reply" | "edit" | "reaction";
const KINDS: Kind[] = ["message", "thread reply", "edit", "reaction"];

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

/** A linear chain of unsigned fixture events in one room. */
class Chain {
  #n = 0;
  last: string | undefined;

  event(type: string, content: JsonObject, stateKey?: string): NewEvent {
    const id = `$bench-${++this.#n}`;
    const pdu = {
      room_id: ROOM,
      sender: USER,
      type,
      content,
      origin_server_ts: 1_700_000_000_000 + this.#n,
      depth: this.#n,
      prev_events: this.last ? [this.last] : [],
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      ...(stateKey === undefined ? {} : { state_key: stateKey }),
    };
    this.last = id;
    return { eventId: id, pdu, status: "accepted" };
  }
}

function eventOf(chain: Chain, kind: Kind, root: string, i: number): NewEvent {
  const body = `${kind} ${i}`;
  switch (kind) {
    case "message":
      return chain.event("m.room.message", { msgtype: "m.text", body });
    case "thread reply":
      return chain.event("m.room.message", {
        msgtype: "m.text",
        body,
        "m.relates_to": { rel_type: "m.thread", event_id: root },
      });
    case "edit":
      return chain.event("m.room.message", {
        msgtype: "m.text",
        body: `* ${body}`,
        "m.new_content": { msgtype: "m.text", body },
        "m.relates_to": { rel_type: "m.replace", event_id: root },
      });
    case "reaction":
      return chain.event("m.reaction", {
        "m.relates_to": { rel_type: "m.annotation", event_id: root, key: `${i}` },
      });
  }
}

/** Count the mutations of every commit made through `kv`. */
function countMutations(kv: Deno.Kv): { mutations: number } {
  const counter = { mutations: 0 };
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const op = atomic();
    for (const name of ["set", "delete", "sum"] as const) {
      const original = op[name].bind(op) as (...args: unknown[]) => Deno.AtomicOperation;
      (op as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
        counter.mutations++;
        return original(...args);
      };
    }
    return op;
  };
  return counter;
}

async function run(path: string, kind: Kind, events: number) {
  const kv = await Deno.openKv(path);
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const chain = new Chain();
    const setup = [
      chain.event("m.room.create", { room_version: "10", creator: USER }, ""),
      chain.event("m.room.member", { membership: "join" }, USER),
      chain.event("m.room.message", { msgtype: "m.text", body: "root" }),
    ];
    await store.append({ roomId: ROOM, events: setup });
    const root = setup[2].eventId;
    const batch = Array.from({ length: events }, (_, i) => eventOf(chain, kind, root, i));
    const counter = countMutations(kv);
    const started = performance.now();
    for (const event of batch) await store.append({ roomId: ROOM, events: [event] });
    const ms = performance.now() - started;
    return { mutations: counter.mutations / events, usPerEvent: (ms * 1000) / events };
  } finally {
    kv.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const events = flag("events", 400);
const runs = flag("runs", 3);
const dir = await Deno.makeTempDir();
const rows: string[][] = [];
try {
  for (const kind of KINDS) {
    const memory: number[] = [];
    const file: number[] = [];
    let mutations = 0;
    for (let r = 0; r < runs; r++) {
      const m = await run(":memory:", kind, events);
      memory.push(m.usPerEvent);
      mutations = m.mutations;
      file.push(
        (await run(`${dir}/bench-${kind.replace(" ", "_")}-${r}.kv`, kind, events)).usPerEvent,
      );
    }
    rows.push([
      kind,
      mutations.toFixed(1),
      `${median(memory).toFixed(0)} µs`,
      `${median(file).toFixed(0)} µs`,
    ]);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
console.log(`${events} appends of one event each per kind, median of ${runs} runs\n`);
console.log(
  markdownTable(["event", "KV mutations per commit", "append, :memory:", "append, KV file"], rows),
);
