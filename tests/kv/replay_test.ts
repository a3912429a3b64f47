import assert from "node:assert/strict";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import {
  greatestIdResolver,
  memoryStore,
  RoomBuilder,
  variedRoomHistory,
} from "./event_fixtures.ts";

async function appendAll(
  store: {
    append: (r: import("../../domain/ports/event_store.ts").AppendRequest) => Promise<unknown>;
  },
  rooms: number,
  eventsPerRoom: number,
): Promise<void> {
  // Every room at once, and every request of a room queued at once, so group commit folds
  // them differently from replay's own batching.
  await Promise.all(
    Array.from({ length: rooms }, (_, r) =>
      Promise.all(
        variedRoomHistory(`!room${String(r).padStart(3, "0")}:test`, eventsPerRoom).map((req) =>
          store.append(req)
        ),
      )),
  );
}

Deno.test("replay of 10,000 events over 100 rooms rebuilds identical projections", async () => {
  const { kv, store } = await memoryStore();
  await appendAll(store, 100, 100);
  const target = await Deno.openKv(":memory:");
  const phases = new Set<string>();
  let lastDone = 0;
  const report = await replay({
    source: kv,
    target,
    resolver: greatestIdResolver,
    onProgress: (p) => {
      phases.add(p.phase);
      lastDone = p.eventsDone;
    },
  });
  assert.equal(report.rooms, 100);
  assert.equal(report.events, 10_000);
  assert.equal(lastDone, 10_000);
  assert.deepEqual([...phases], ["rebuild", "compare"]);
  assert.deepEqual(report.differences, []);
  // The rebuilt store holds the same rooms, so the comparison compared something.
  let rebuiltHeads = 0;
  for await (const _ of target.list({ prefix: ["roomid_head"] })) rebuiltHeads++;
  assert.equal(rebuiltHeads, 100);
  // And the room servers projection, which only member changes write.
  let rebuiltServers = 0;
  for await (const _ of target.list({ prefix: ["roomid_servers"] })) rebuiltServers++;
  assert.ok(rebuiltServers > 0);
  kv.close();
  target.close();
});

Deno.test("replay reports a corrupted projection", async () => {
  const { kv, store } = await memoryStore();
  await appendAll(store, 3, 60);
  const keys = new EventStoreKeys();
  const roomId = "!room001:test";
  await kv.delete(keys.currentState(roomId, "m.room.topic", ""));
  await kv.set(keys.roomMember(roomId, "@u0:test"), { membership: "ban", event_id: "$nope" });
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.equal(report.differenceCount, 2);
  const byMap = new Map(report.differences.map((d) => [d.map, d]));
  assert.equal(byMap.get("roomid_state")?.live, undefined);
  assert.match(String(byMap.get("roomid_state")?.rebuilt), /^\$room001-/);
  assert.deepEqual(byMap.get("roomuserid_membership")?.key, [
    "roomuserid_membership",
    roomId,
    "@u0:test",
  ]);
  kv.close();
  target.close();
});

Deno.test("replay into a namespace of the same database, and refuses a non-empty target", async () => {
  const { kv, store } = await memoryStore();
  await appendAll(store, 2, 30);
  const report = await replay({
    source: kv,
    target: kv,
    targetNamespace: ["replay", 1],
    resolver: greatestIdResolver,
  });
  assert.equal(report.events, 60);
  assert.equal(report.differenceCount, 0);
  await assert.rejects(
    replay({
      source: kv,
      target: kv,
      targetNamespace: ["replay", 1],
      resolver: greatestIdResolver,
    }),
    /not empty/,
  );
  await assert.rejects(
    replay({ source: kv, target: kv, resolver: greatestIdResolver }),
    /fresh database/,
  );
  kv.close();
});

Deno.test("the replay script exits 0 on a sound store and 1 on a corrupted one", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/tessera.kv`;
  const kv = await Deno.openKv(path);
  const { KvEventStore } = await import("../../kv/kv_event_store.ts");
  const store = new KvEventStore(kv, { resolver: greatestIdResolver });
  // Linear history only: the script resolves with the real algorithm, the fixtures never fork.
  const room = new RoomBuilder("!script:test");
  await store.append({
    roomId: "!script:test",
    events: [room.create(), room.member("@a:test", "join"), room.message("hi")],
  });
  kv.close();
  const run = async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-env", "scripts/replay.ts", path],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
  };
  const sound = await run();
  assert.equal(sound.code, 0, sound.stdout);
  assert.match(sound.stdout, /replayed 3 events in 1 rooms: 0 difference/);

  const again = await Deno.openKv(path);
  await again.delete(new EventStoreKeys().userRoom("@a:test", "!script:test"));
  again.close();
  const broken = await run();
  assert.equal(broken.code, 1);
  assert.match(broken.stdout, /userroomid_membership \["userroomid_membership","@a:test"/);
  await Deno.remove(dir, { recursive: true });
});

/** A body that brings a fixture PDU close to the 65,536 bytes the live path accepts. */
const NEAR_LIMIT_BODY = "x".repeat(64_000);

/** Append each event as the live path may have: one request per event, so each fits alone. */
async function appendOneByOne(
  store: {
    append: (r: import("../../domain/ports/event_store.ts").AppendRequest) => Promise<unknown>;
  },
  roomId: string,
  events: import("../../domain/ports/event_store.ts").NewEvent[],
  backfill = false,
): Promise<void> {
  for (const event of events) await store.append({ roomId, events: [event], backfill });
}

async function replayMatches(kv: Deno.Kv, rooms: number, events: number): Promise<void> {
  const target = await Deno.openKv(":memory:");
  try {
    const report = await replay({ source: kv, target, resolver: greatestIdResolver });
    assert.equal(report.rooms, rooms);
    assert.equal(report.events, events);
    assert.deepEqual(report.differences, []);
  } finally {
    target.close();
  }
}

Deno.test("replay rebuilds a room of many messages near the PDU size limit", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!big:test");
  const setup = [room.create(), room.member("@alice:test", "join")];
  const messages = Array.from({ length: 80 }, (_, i) => room.message(`${i} ${NEAR_LIMIT_BODY}`));
  await appendOneByOne(store, "!big:test", [...setup, ...messages]);
  // Backfilled history of the same size takes the other direction of the log.
  const old = new RoomBuilder("!big:test", "big-old");
  const backfill = Array.from(
    { length: 20 },
    (_, i) => old.message(`old ${i} ${NEAR_LIMIT_BODY}`, { prev: [] }),
  );
  await appendOneByOne(store, "!big:test", backfill, true);
  await replayMatches(kv, 1, 102);
  kv.close();
});

Deno.test("replay rebuilds a room of large state events", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!state:test");
  const events = [room.create(), room.member("@alice:test", "join")];
  for (let i = 0; i < 70; i++) {
    events.push(room.event("org.example.big", {
      stateKey: `k${i}`,
      content: { blob: `${i} ${NEAR_LIMIT_BODY}` },
    }));
  }
  await appendOneByOne(store, "!state:test", events);
  await replayMatches(kv, 1, events.length);
  kv.close();
});

Deno.test("replay rebuilds a room of many members with user IDs at the length limit", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!members:test");
  const events = [room.create(), room.member("@alice:test", "join")];
  // 255-byte user IDs fill a commit's 80 KiB of keys long before its 1,000 mutations.
  for (let i = 0; i < 1_500; i++) {
    const userId = `@${String(i).padStart(6, "0")}${"u".repeat(243)}:test`;
    assert.equal(userId.length, 255);
    events.push(room.member(userId, "join"));
    if (i % 100 === 0) events.push(room.message(`${i} ${NEAR_LIMIT_BODY}`, { sender: userId }));
  }
  await appendOneByOne(store, "!members:test", events);
  await replayMatches(kv, 1, events.length);
  kv.close();
});
