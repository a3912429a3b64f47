/**
 * `deno task bench:federation-input`: inbound PDUs per second through the whole check pipeline
 * of `/send` (TransactionReceiver, then FederationPduInput: format and size, Ed25519 signatures
 * verified for real, content hash, auth against the event's auth events, then the append with
 * the state checks in the store's planner), in transactions of 50 PDUs, over a KvEventStore on
 * `:memory:` and on a KV file (one disk sync per commit). The remote server's messages are
 * built and signed beforehand; its keys come from an in-memory key ring (no network).
 *
 * Two shapes: one room (a transaction's PDUs of one room are handled in order), and eight rooms
 * at once (rooms are handled side by side). Prints the median of the runs (min-max).
 *
 * Flags: --pdus=N per run (default 2000), --runs=N (default 3).
 */
import { FederationPduInput } from "../domain/federation/pdu_input/index.ts";
import { keyRingVerifier } from "../domain/federation/pdu_input/signatures.ts";
import { TransactionReceiver } from "../domain/federation/inbound_transactions.ts";
import { LocalEventSender } from "../domain/local_event_sender.ts";
import type { Pdu } from "../domain/protocol/events.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { KvInboundTransactionStore } from "../kv/inbound_transaction_store.ts";
import { testKeyRing, testServer } from "../tests/domain/federation/remote_room_builder.ts";
import { RemoteView } from "../tests/federation/remote_view.ts";
import { formatSummary, markdownTable, summarise } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const PDUS = flag("pdus", 2000);
const RUNS = flag("runs", 3);
const PER_TRANSACTION = 50;
const LOCAL = "a.test";
const ALICE = "@alice:a.test";
const BOB = "@bob:b.test";
const REMOTE = await testServer("b.test", 2);
const localKey = await signingKeyFromSeed(new Uint8Array(32).fill(1), "ed25519:a1");

/** One run: `rooms` rooms, PDUS messages spread over them; returns PDUs per second. */
async function run(path: string, rooms: number): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const sender = new LocalEventSender({ store, serverName: LOCAL, signingKey: localKey });
    const input = new FederationPduInput({
      store,
      transport: {
        request: () => Promise.reject(new Error("the benchmark's PDUs need no fetches")),
      },
      verifySignatures: keyRingVerifier(testKeyRing([REMOTE])),
      resolver: resolveState,
    });
    const receiver = new TransactionReceiver({
      pduInput: input,
      answers: new KvInboundTransactionStore(kv),
      store,
    });

    // Each room: Alice's public room, Bob's join accepted through the pipeline, then his
    // messages built (not yet sent) as a chain.
    const perRoom: Pdu[][] = [];
    for (let r = 0; r < rooms; r++) {
      const { roomId } = await sender.createRoom({ version: "10", creator: ALICE });
      const send = (type: string, content: Record<string, unknown>, stateKey = "") =>
        sender.send({ roomId, sender: ALICE, type, stateKey, content: content as never });
      await send("m.room.member", { membership: "join" }, ALICE);
      await send("m.room.power_levels", { users: { [ALICE]: 100 } });
      await send("m.room.join_rules", { join_rule: "public" });
      const view = new RemoteView(roomId, roomVersion("10")!, REMOTE.name, REMOTE.key);
      await view.syncFrom(store);
      const tip = (await store.roomHead(roomId))!.forwardExtremities[0];
      const join = await view.build(tip, {
        sender: BOB,
        type: "m.room.member",
        stateKey: BOB,
        content: { membership: "join" },
      });
      const joined = await input.handle(REMOTE.name, roomId, join.pdu);
      if (joined.status !== "accepted") throw new Error(`join not accepted: ${joined.error}`);
      const pdus: Pdu[] = [];
      let prev = join.eventId;
      for (let i = 0; i < PDUS / rooms; i++) {
        const message = await view.build(prev, {
          sender: BOB,
          type: "m.room.message",
          content: { msgtype: "m.text", body: `message ${i} of the benchmark` },
        });
        pdus.push(message.pdu);
        prev = message.eventId;
      }
      perRoom.push(pdus);
    }

    // Transactions interleave the rooms, as a sender's stream of several rooms would.
    const all: Pdu[] = [];
    for (let i = 0; i < PDUS / rooms; i++) for (const pdus of perRoom) all.push(pdus[i]);
    const started = performance.now();
    for (let i = 0; i < all.length; i += PER_TRANSACTION) {
      const answer = await receiver.receive(REMOTE.name, `txn${i}`, {
        pdus: all.slice(i, i + PER_TRANSACTION),
        edus: [],
      });
      const errors = Object.values(answer.pdus).filter((r) => r.error !== undefined);
      if (errors.length > 0) throw new Error(`PDUs refused: ${JSON.stringify(errors[0])}`);
    }
    const seconds = (performance.now() - started) / 1000;
    return all.length / seconds;
  } finally {
    kv.close();
  }
}

const rows: string[][] = [];
for (const [label, rooms] of [["1 room", 1], ["8 rooms", 8]] as const) {
  for (const storage of ["memory", "file"] as const) {
    const rates: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const dir = storage === "file" ? await Deno.makeTempDir({ prefix: "bench-fed-in-" }) : "";
      try {
        rates.push(await run(storage === "file" ? `${dir}/bench.kv` : ":memory:", rooms));
      } finally {
        if (dir) await Deno.remove(dir, { recursive: true });
      }
    }
    rows.push([
      label,
      storage === "file" ? "KV file" : ":memory:",
      formatSummary(summarise(rates)),
    ]);
    console.log(`${label}, ${storage}: ${formatSummary(summarise(rates))} PDUs/s`);
  }
}
console.log(
  `\nInbound PDUs per second through /send's checks (${PDUS} PDUs in transactions of ` +
    `${PER_TRANSACTION}, median of ${RUNS} runs, min-max):\n`,
);
console.log(markdownTable(["shape", "storage", "PDUs/s"], rows));
