/**
 * `deno task bench:federation` (first part): what the federation sender's hook adds to a local
 * send, for rooms with 0, 1, 10 and 100 remote servers, on `:memory:` KV (no disk sync to hide
 * CPU costs behind) and on a KV file. Plain and hooked senders over the same store take turns,
 * round after round, and the medians are compared, so load from elsewhere hits both alike.
 *
 * Flags: --rounds=N (turns each, default 7), --sends=N (sequential sends per turn, default 50).
 */
import { LocalEventSender } from "../domain/local_event_sender.ts";
import { FederationSender } from "../domain/federation/federation_sender.ts";
import { FEDERATION_STREAM } from "../domain/federation/federation_transactions.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { KvOutboxStore } from "../kv/outbox_store.ts";
import { testServer } from "../tests/domain/federation/remote_room_builder.ts";
import { appendRemoteJoin } from "../tests/federation/remote_joins.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import { markdownTable } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const ROUNDS = flag("rounds", 7);
const SENDS = flag("sends", 50);
const SERVER = "bench.local";
const CREATOR = `@a:${SERVER}`;

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[sorted.length >> 1];
}

/** A public room with one member on each of `remote` other servers, joined through the store. */
async function roomWithRemotes(
  store: KvEventStore,
  sender: LocalEventSender,
  remote: number,
): Promise<string> {
  const { roomId } = await sender.createRoom({ version: "10", creator: CREATOR });
  const send = (type: string, stateKey: string, content: JsonObject) =>
    sender.send({ roomId, sender: CREATOR, type, stateKey, content });
  await send("m.room.member", CREATOR, { membership: "join" });
  await send("m.room.join_rules", "", { join_rule: "public" });
  for (let i = 0; i < remote; i++) {
    const server = await testServer(`remote${i}.test`, 1 + (i % 200));
    await appendRemoteJoin(store, roomId, `@u:${server.name}`, server);
  }
  return roomId;
}

async function measure(kind: "memory" | "file"): Promise<string[][]> {
  const dir = kind === "file" ? await Deno.makeTempDir({ prefix: "tessera-fed-send-" }) : "";
  const kv = await Deno.openKv(kind === "file" ? `${dir}/kv.sqlite3` : ":memory:");
  const rows: string[][] = [];
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:b");
    const hook = new FederationSender({
      store,
      outbox: new KvOutboxStore(kv, FEDERATION_STREAM),
      // Never started: the benchmark measures queueing, not sending.
      transport: { request: () => Promise.reject(new Error("not sending")) },
      serverName: SERVER,
    });
    const plain = new LocalEventSender({ store, serverName: SERVER, signingKey });
    const hooked = new LocalEventSender({
      store,
      serverName: SERVER,
      signingKey,
      eventHooks: [hook],
    });
    for (const remote of [0, 1, 10, 100]) {
      const roomId = await roomWithRemotes(store, plain, remote);
      let n = 0;
      const turn = async (sender: LocalEventSender) => {
        const start = performance.now();
        for (let i = 0; i < SENDS; i++) {
          await sender.send({
            roomId,
            sender: CREATOR,
            type: "m.room.message",
            content: { msgtype: "m.text", body: `m${n++}` },
          });
        }
        return (performance.now() - start) / SENDS;
      };
      const burst = async (sender: LocalEventSender) => {
        const start = performance.now();
        await Promise.all(Array.from({ length: 64 }, () =>
          sender.send({
            roomId,
            sender: CREATOR,
            type: "m.room.message",
            content: { msgtype: "m.text", body: `c${n++}` },
          })));
        return (performance.now() - start) / 64;
      };
      const times = { plain: [] as number[], hooked: [] as number[] };
      const bursts = { plain: [] as number[], hooked: [] as number[] };
      await turn(plain);
      await turn(hooked);
      for (let round = 0; round < ROUNDS; round++) {
        times.plain.push(await turn(plain));
        times.hooked.push(await turn(hooked));
        bursts.plain.push(await burst(plain));
        bursts.hooked.push(await burst(hooked));
      }
      const ms = (v: number) => v.toFixed(3);
      const pct = (a: number, b: number) => `${(((b - a) / a) * 100).toFixed(1)}%`;
      const [p, h] = [median(times.plain), median(times.hooked)];
      const [bp, bh] = [median(bursts.plain), median(bursts.hooked)];
      rows.push([
        kind,
        String(remote),
        ms(p),
        ms(h),
        pct(p, h),
        ms(bp),
        ms(bh),
        pct(bp, bh),
      ]);
    }
  } finally {
    kv.close();
    if (dir) await Deno.remove(dir, { recursive: true });
  }
  return rows;
}

console.log(
  `Federation sender hook on the send path: ${ROUNDS} alternating turns, ${SENDS} sequential ` +
    `sends and a burst of 64 concurrent ones per turn; medians in ms per event`,
);
const rows = [...await measure("memory"), ...await measure("file")];
console.log();
console.log(markdownTable([
  "KV",
  "remote servers",
  "sequential, plain",
  "sequential, hooked",
  "added",
  "burst of 64, plain",
  "burst of 64, hooked",
  "added",
], rows));
console.log();
console.log(
  `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, load average ${
    Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
  }`,
);
