/**
 * `deno run --allow-all scripts/bench_device_lists.ts`: the device-list part of an incremental
 * sync (DeviceListService.changesBetween) for a user in 50 rooms of 20 members, over a durable
 * local KV file and over :memory:, in four windows: idle, messages in every room, a room-mate's
 * key change plus a join, and a catch-up over the user's joins of all 50 rooms. Prints the
 * median (min-max) microseconds per call over five runs.
 */
import { DeviceListService } from "../domain/e2ee/device_list_service.ts";
import type { NewEvent } from "../domain/ports/event_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { commitWithDeviceListChanges } from "../kv/device_list_log.ts";
import { KvDeviceListReader } from "../kv/device_list_reads.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";
import { markdownTable, summarise } from "./bench_stats.ts";

const ROOMS = 50;
const MEMBERS = 20;
const RUNS = 5;
const CALLS_PER_RUN = 200;
const USER = "@me:bench.test";

/** Hand-made PDUs: the store checks neither hashes nor signatures. */
class Room {
  #n = 0;
  #last: string | undefined;
  constructor(readonly roomId: string) {}

  event(type: string, sender: string, content: Record<string, unknown>, stateKey?: string) {
    const eventId = `$${this.roomId.slice(1, 6)}-${++this.#n}`;
    const pdu = {
      room_id: this.roomId,
      sender,
      type,
      content,
      origin_server_ts: 1_700_000_000_000 + this.#n,
      depth: this.#n,
      prev_events: this.#last ? [this.#last] : [],
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      ...(stateKey === undefined ? {} : { state_key: stateKey }),
    };
    this.#last = eventId;
    return { eventId, pdu, status: "accepted" } as NewEvent;
  }

  join(userId: string): NewEvent {
    return this.event("m.room.member", userId, { membership: "join" }, userId);
  }
}

async function scenario(kv: Deno.Kv) {
  const store = new KvEventStore(kv, { resolver: resolveState });
  const token = () => store.syncBarrier("@bench:bench.test");
  const rooms = Array.from({ length: ROOMS }, (_, i) => new Room(`!room${i}:bench.test`));
  const t0 = await token();
  for (const [i, room] of rooms.entries()) {
    // Members overlap between rooms, as friends do: 19 of 60 other users per room.
    const others = Array.from(
      { length: MEMBERS - 1 },
      (_, j) => `@u${(i * 7 + j) % 60}:bench.test`,
    );
    await store.append({
      roomId: room.roomId,
      events: [
        room.event("m.room.create", USER, { room_version: "10" }, ""),
        room.join(USER),
        ...others.map((u) => room.join(u)),
      ],
    });
  }
  const t1 = await token();
  const t2 = await token();
  for (const room of rooms) {
    await store.append({ roomId: room.roomId, events: [room.event("m.room.message", USER, {})] });
  }
  const t3 = await token();
  await commitWithDeviceListChanges(kv, (_op, changes) => {
    changes.add("@u3:bench.test", { deviceIds: ["NEW"] });
    return Promise.resolve(true);
  });
  await store.append({ roomId: rooms[7].roomId, events: [rooms[7].join("@new:bench.test")] });
  const t4 = await token();
  return [
    { name: "idle window", since: t1, upTo: t2 },
    { name: "a message in each of the 50 rooms", since: t2, upTo: t3 },
    { name: "a room-mate's key change and a join", since: t3, upTo: t4 },
    { name: "catch-up over joining all 50 rooms", since: t0, upTo: t4 },
  ];
}

async function measure(kv: Deno.Kv): Promise<string[][]> {
  const windows = await scenario(kv);
  const service = new DeviceListService(new KvDeviceListReader(kv));
  const rows: string[][] = [];
  for (const w of windows) {
    const result = await service.changesBetween(USER, w.since, w.upTo);
    const runs: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const start = performance.now();
      for (let i = 0; i < CALLS_PER_RUN; i++) await service.changesBetween(USER, w.since, w.upTo);
      runs.push(((performance.now() - start) * 1000) / CALLS_PER_RUN);
    }
    const s = summarise(runs);
    rows.push([
      w.name,
      `${s.median.toFixed(0)} (${s.min.toFixed(0)}-${s.max.toFixed(0)})`,
      `${result.changed.length} changed, ${result.left.length} left`,
    ]);
  }
  return rows;
}

const dir = await Deno.makeTempDir();
try {
  for (const [label, path] of [["KV file", `${dir}/bench.kv`], [":memory:", ":memory:"]]) {
    const kv = await Deno.openKv(path);
    try {
      console.log(`\n${label}: device-list part of one incremental sync, user in ${ROOMS} rooms`);
      console.log(
        markdownTable(["window", "µs per call, median (min-max)", "answer"], await measure(kv)),
      );
    } finally {
      kv.close();
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
