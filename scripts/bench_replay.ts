/**
 * `deno task bench:replay`: replay throughput, in events rebuilt (and compared) per second, of
 * one room holding a few thousand signed messages, read from a KV file and rebuilt into
 * `:memory:` or into another KV file (one disk sync per commit).
 *
 * Flags: --events=N (messages in the room, default 5000), --body=N (bytes of each message's
 * body, default 12; 60000 puts every PDU near the 64 KiB limit), --runs=N (default 3),
 * --into=memory|file (default both), --dir=PATH (where KV files go; default a temp dir).
 */
import { buildEvent } from "../domain/protocol/event_builder.ts";
import { LocalEventSender } from "../domain/local_event_sender.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { replay } from "../kv/replay.ts";
import { BENCH_SERVER, BENCH_USER, createBenchRoom } from "./bench_rooms.ts";
import { formatSummary, markdownTable, summarise } from "./bench_stats.ts";

type Into = "memory" | "file";

interface Options {
  events: number;
  body: number;
  runs: number;
  into: Into[];
  dir?: string;
}

function parseOptions(args: string[]): Options {
  const options: Options = { events: 5000, body: 12, runs: 3, into: ["memory", "file"] };
  for (const arg of args) {
    const [name, value] = arg.split("=", 2);
    const number = Number(value);
    if (name === "--events" && number > 0) options.events = number;
    else if (name === "--body" && number >= 0) options.body = number;
    else if (name === "--runs" && number > 0) options.runs = number;
    else if (name === "--into" && (value === "memory" || value === "file")) options.into = [value];
    else if (name === "--dir" && value) options.dir = value;
    else throw new Error(`bad option ${arg}`);
  }
  return options;
}

/** Fill a KV file with one room: setup through the sender, then a chain of built messages. */
async function buildSource(path: string, options: Options): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:bench");
    const sender = new LocalEventSender({ store, serverName: BENCH_SERVER, signingKey });
    const roomId = await createBenchRoom(sender, "10");
    const version = roomVersion("10")!;
    const state = await store.currentState(roomId);
    const head = (await store.roomHead(roomId))!;
    const last = (await store.getEvent(head.forwardExtremities[0]))!;
    let prev = { eventId: last.eventId, depth: last.pdu.depth };
    const padding = "x".repeat(options.body);
    const messages: NewEvent[] = [];
    for (let n = 0; n < options.events; n++) {
      const built = await buildEvent({
        version,
        roomId,
        sender: BENCH_USER,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `${n}: ${padding}` },
        prevEvents: [prev],
        currentState: (key) => {
          const eventId = state.get(key);
          return eventId === undefined ? undefined : { eventId };
        },
        serverName: BENCH_SERVER,
        signingKey,
        originServerTs: 1_700_000_000_000 + n,
      });
      messages.push({ eventId: built.eventId, pdu: built.pdu, status: "accepted" });
      prev = { eventId: built.eventId, depth: built.pdu.depth };
    }
    // One request per event, all queued: the live path's group commit folds what fits.
    await Promise.all(messages.map((event) => store.append({ roomId, events: [event] })));
    return head.lastPosition + messages.length;
  } finally {
    kv.close();
  }
}

async function timeReplay(source: string, into: Into, dir: string, run: number) {
  const sourceKv = await Deno.openKv(source);
  const targetPath = into === "memory" ? ":memory:" : `${dir}/target-${run}.kv`;
  const target = await Deno.openKv(targetPath);
  try {
    const started = performance.now();
    const report = await replay({ source: sourceKv, target, resolver: resolveState });
    const seconds = (performance.now() - started) / 1000;
    if (report.differenceCount > 0) {
      throw new Error(`replay found ${report.differenceCount} difference(s)`);
    }
    return { events: report.events, seconds };
  } finally {
    sourceKv.close();
    target.close();
    if (into === "file") await Deno.remove(targetPath).catch(() => {});
  }
}

if (import.meta.main) {
  const options = parseOptions(Deno.args);
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "tessera-bench-replay-" });
  const source = `${dir}/source.kv`;
  try {
    const events = await buildSource(source, options);
    console.log(`one room of ${events} events (message bodies of ${options.body} bytes)`);
    const rows: string[][] = [];
    for (const into of options.into) {
      const rates: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        const result = await timeReplay(source, into, dir, run);
        rates.push(result.events / result.seconds);
      }
      rows.push([into, String(events), formatSummary(summarise(rates))]);
    }
    console.log(markdownTable(["rebuilt into", "events", "events/s median (min-max)"], rows));
  } finally {
    if (!options.dir) await Deno.remove(dir, { recursive: true });
  }
}
