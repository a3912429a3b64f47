/**
 * `deno task bench:search`: what the full-text search index (`roomid_searchterm`) costs.
 *
 * 1. Index entries per message: KV writes and their bytes (keys in KV's tuple encoding, values
 *    V8-serialised as KV stores them) per message of typical length, beside every other entry
 *    an append writes.
 * 2. Append cost: one message per commit on a file-backed KV (one disk sync each) and on
 *    `:memory:`, indexed messages against the same events under a type that is not indexed.
 * 3. Search latency over HTTP in process: rare and common terms, both orders, with context.
 *
 * Flags: --quick, --messages=N (corpus and append runs), --search-messages=N, --runs=N,
 * --dir=PATH (where the file KV goes; default a temp dir).
 */
import { assembleServer } from "../main.ts";
import { loadConfig } from "../domain/config.ts";
import { type JsonObject } from "../domain/protocol/json.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { serialize } from "node:v8";
import { estimateKeyBytes } from "../kv/commit_budget.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { markdownTable, summarise } from "./bench_stats.ts";

interface Options {
  messages: number;
  searchMessages: number;
  runs: number;
  dir?: string;
}

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const value = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  return {
    messages: Number(value("messages") ?? (quick ? 300 : 2_000)),
    searchMessages: Number(value("search-messages") ?? (quick ? 500 : 5_000)),
    runs: Number(value("runs") ?? (quick ? 5 : 21)),
    dir: value("dir"),
  };
}

/**
 * A deterministic corpus: words drawn Zipf-like from a vocabulary (20 common English words, 12
 * of them stop words, then invented ones), 4 to 24 words a message.
 */
function corpus(count: number): string[] {
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  const common = [
    "the",
    "a",
    "to",
    "and",
    "is",
    "it",
    "you",
    "that",
    "in",
    "we",
    "for",
    "on",
    "this",
    "with",
    "meeting",
    "tomorrow",
    "server",
    "deploy",
    "review",
    "thanks",
  ];
  // Invented words of 3 to 8 letters, so messages run as long as chat lines do.
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const invented = Array.from({ length: 3_000 }, () => {
    const length = 3 + Math.floor(random() * 6);
    return Array.from({ length }, () => letters[Math.floor(random() * 26)]).join("");
  });
  const vocabulary = [...common, ...invented];
  return Array.from({ length: count }, (_, n) => {
    const words = 4 + Math.floor(random() * 21);
    const out: string[] = [];
    for (let i = 0; i < words; i++) {
      // Zipf-like: small indexes far more often.
      const index = Math.floor(vocabulary.length * random() ** 3);
      out.push(vocabulary[index]);
    }
    if (n % 50 === 0) out.push("platypus");
    return out.join(" ") + ".";
  });
}

/** Events of one room: create, join, then one event per text, as `type`. */
function roomEvents(roomId: string, texts: readonly string[], type: string): NewEvent[][] {
  const sender = "@alice:bench.test";
  let n = 0;
  let last: string | undefined;
  const event = (eventType: string, content: JsonObject, stateKey?: string): NewEvent => {
    const id = `$${type}-${++n}`;
    const pdu = {
      room_id: roomId,
      sender,
      type: eventType,
      content,
      origin_server_ts: 1_700_000_000_000 + n,
      depth: n,
      prev_events: last ? [last] : [],
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      ...(stateKey === undefined ? {} : { state_key: stateKey }),
    };
    last = id;
    return { eventId: id, pdu, status: "accepted" };
  };
  return [
    [
      event("m.room.create", { room_version: "10" }, ""),
      event("m.room.member", { membership: "join" }, sender),
    ],
    ...texts.map((body) => [event(type, { msgtype: "m.text", body })]),
  ];
}

/** Entries and estimated bytes per map after appending `texts` as messages. */
async function indexCost(texts: readonly string[]) {
  const kv = await Deno.openKv(":memory:");
  const store = new KvEventStore(kv, { resolver: resolveState });
  const roomId = "!cost:bench.test";
  const [setup, ...messages] = roomEvents(roomId, texts, "m.room.message");
  await store.append({ roomId, events: setup });
  const before = await mapSizes(kv);
  for (const events of messages) await store.append({ roomId, events });
  const after = await mapSizes(kv);
  kv.close();
  const perMessage = (map: string, field: "entries" | "keyBytes" | "valueBytes") =>
    ((after.get(map)?.[field] ?? 0) - (before.get(map)?.[field] ?? 0)) / texts.length;
  let otherEntries = 0;
  let otherBytes = 0;
  for (const map of after.keys()) {
    if (map === "roomid_searchterm") continue;
    otherEntries += perMessage(map, "entries");
    otherBytes += perMessage(map, "keyBytes") + perMessage(map, "valueBytes");
  }
  return {
    words: texts.reduce((n, t) => n + t.split(" ").length, 0) / texts.length,
    chars: texts.reduce((n, t) => n + t.length, 0) / texts.length,
    entries: perMessage("roomid_searchterm", "entries"),
    keyBytes: perMessage("roomid_searchterm", "keyBytes"),
    valueBytes: perMessage("roomid_searchterm", "valueBytes"),
    otherEntries,
    otherBytes,
  };
}

async function mapSizes(kv: Deno.Kv) {
  const sizes = new Map<string, { entries: number; keyBytes: number; valueBytes: number }>();
  for await (const entry of kv.list({ prefix: [] })) {
    const map = String(entry.key[0]);
    const size = sizes.get(map) ?? { entries: 0, keyBytes: 0, valueBytes: 0 };
    size.entries++;
    size.keyBytes += estimateKeyBytes(entry.key);
    // KV stores values V8-serialised (Uint8Array as is); keys in the tuple encoding, which the
    // commit budget's estimate counts exactly for strings and numbers.
    size.valueBytes += entry.value instanceof Uint8Array
      ? entry.value.byteLength
      : serialize(entry.value).byteLength;
    sizes.set(map, size);
  }
  return sizes;
}

/**
 * Microseconds per append of one event per commit, indexed type against a type that is not
 * indexed (same content), alternating the two `repeats` times and taking each one's median, so
 * load on the machine weighs on both alike.
 */
async function appendCost(texts: readonly string[], path: string, repeats: number) {
  const runs: Record<string, number[]> = { "m.room.message": [], "m.bench.unindexed": [] };
  for (let r = 0; r < repeats; r++) {
    for (const type of Object.keys(runs)) {
      const file = path === ":memory:" ? ":memory:" : `${path}-${r}-${type}.kv`;
      const kv = await Deno.openKv(file);
      const store = new KvEventStore(kv, { resolver: resolveState });
      const roomId = "!append:bench.test";
      const [setup, ...messages] = roomEvents(roomId, texts, type);
      await store.append({ roomId, events: setup });
      const start = performance.now();
      for (const events of messages) await store.append({ roomId, events });
      runs[type].push(((performance.now() - start) * 1000) / messages.length);
      kv.close();
    }
  }
  return {
    indexed: summarise(runs["m.room.message"]).median,
    unindexed: summarise(runs["m.bench.unindexed"]).median,
  };
}

/** Median milliseconds of each search over HTTP, in process, over `messages` messages. */
async function searchLatency(options: Options) {
  const config = loadConfig({
    TESSERA_SERVER_NAME: "bench.test",
    TESSERA_RATE_LIMITS: "off",
  }, { dev: true });
  const kv = await Deno.openKv(":memory:");
  const { app, deps } = await assembleServer(config, kv, {
    passwordHashing: { logN: 10, r: 8, p: 1 },
  });
  const request = async (method: string, path: string, token?: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: {
        "content-type": "application/json",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (res.status !== 200) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
    return json;
  };
  const registered = await request("POST", "/_matrix/client/v3/register", undefined, {
    username: "alice",
    auth: { type: "m.login.dummy" },
  });
  const token = registered.access_token as string;
  const room = await request("POST", "/_matrix/client/v3/createRoom", token, {
    preset: "private_chat",
  });
  const texts = corpus(options.searchMessages);
  // Sent through the server's own sender (built, signed, authorised), 16 at a time.
  for (let i = 0; i < texts.length; i += 16) {
    await Promise.all(
      texts.slice(i, i + 16).map((body) =>
        deps.sender.send({
          roomId: room.room_id,
          sender: registered.user_id,
          type: "m.room.message",
          content: { msgtype: "m.text", body },
        })
      ),
    );
  }
  const searches: [string, JsonObject][] = [
    ["rare term (1 in 50 messages), rank", { search_term: "platypus" }],
    ["common term, rank", { search_term: "meeting" }],
    ["common term, recent", { search_term: "meeting", order_by: "recent" }],
    ["two common terms", { search_term: "server deploy" }],
    ["prefix of many words", { search_term: "b" }],
    [
      "common term, recent, context 5+5 with profiles",
      {
        search_term: "meeting",
        order_by: "recent",
        event_context: { before_limit: 5, after_limit: 5, include_profile: true },
      },
    ],
  ];
  const rows: string[][] = [];
  for (const [name, criteria] of searches) {
    const times: number[] = [];
    let count = 0;
    for (let run = 0; run < options.runs; run++) {
      const start = performance.now();
      const body = await request("POST", "/_matrix/client/v3/search", token, {
        search_categories: { room_events: criteria },
      });
      times.push(performance.now() - start);
      count = body.search_categories.room_events.count;
    }
    rows.push([name, String(count), summarise(times).median.toFixed(1)]);
  }
  kv.close();
  return rows;
}

function signed(n: number): string {
  return `${n >= 0 ? "+" : ""}${n.toFixed(0)}`;
}

async function main() {
  const options = parseOptions(Deno.args);
  const texts = corpus(options.messages);
  const cost = await indexCost(texts);
  console.log(
    `\n## Search index cost per message (${options.messages} messages, ` +
      `${cost.words.toFixed(1)} words, ${cost.chars.toFixed(0)} characters on average)\n`,
  );
  console.log(markdownTable(["", "KV entries", "bytes (keys + values)"], [
    [
      "search index (roomid_searchterm)",
      cost.entries.toFixed(1),
      `${(cost.keyBytes + cost.valueBytes).toFixed(0)} (${cost.keyBytes.toFixed(0)} + ${
        cost.valueBytes.toFixed(0)
      })`,
    ],
    ["everything else the append writes", cost.otherEntries.toFixed(1), cost.otherBytes.toFixed(0)],
  ]));

  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "tessera-bench-search-" });
  const appendTexts = texts.slice(0, Math.min(texts.length, 500));
  const repeats = Math.max(3, Math.min(options.runs, 7));
  const file = await appendCost(appendTexts, `${dir}/append`, repeats);
  const memory = await appendCost(appendTexts, ":memory:", repeats);
  console.log(
    `\n## Append, one message per commit (µs per event, median of ${repeats} alternating runs)\n`,
  );
  console.log(markdownTable(["KV", "indexed m.room.message", "same event, not indexed", "index"], [
    [
      `file (${appendTexts.length} events)`,
      file.indexed.toFixed(0),
      file.unindexed.toFixed(0),
      signed(file.indexed - file.unindexed),
    ],
    [
      `:memory: (${appendTexts.length} events)`,
      memory.indexed.toFixed(0),
      memory.unindexed.toFixed(0),
      signed(memory.indexed - memory.unindexed),
    ],
  ]));
  if (!options.dir) await Deno.remove(dir, { recursive: true });

  const rows = await searchLatency(options);
  console.log(
    `\n## POST /search over ${options.searchMessages} messages in one room, in process ` +
      `(median of ${options.runs}, ms)\n`,
  );
  console.log(markdownTable(["search", "count", "ms"], rows));
}

if (import.meta.main) await main();
