/**
 * A malicious server (or client) against the federation EDU handlers and the stores behind
 * them: what one server may make this server write, keep or show, beyond what its users are
 * entitled to. Each test names the abuse and what must hold instead.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { withNetwork } from "../federation/network_helpers.ts";
import { RemoteKeyClient } from "../../domain/federation/remote_keys.ts";
import {
  MAX_REMOTE_TYPING_PER_SERVER,
  TypingService,
} from "../../domain/ephemeral/typing_service.ts";
import type { StoredEvent } from "../../domain/ports/event_store.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { KvTypingStore } from "../../kv/typing_store.ts";
import { ReceiptService } from "../../domain/ephemeral/receipt_service.ts";
import { ReceiptEduHandler } from "../../domain/federation/edus/receipt_edu.ts";
import type { Receipt } from "../../domain/ports/receipt_store.ts";
import { KvReceiptStore } from "../../kv/receipt_store.ts";
import { receiptPrefix } from "../../kv/schema.ts";
import { PresenceService } from "../../domain/ephemeral/presence_service.ts";
import { PresenceEduHandler } from "../../domain/federation/edus/presence_edu.ts";
import type { PresenceRecord, PresenceStore } from "../../domain/ports/presence_store.ts";
import type { Membership } from "../../domain/ports/event_store.ts";
import { KvPresenceStore } from "../../kv/presence_store.ts";
import { RemoteDeviceCache } from "../../domain/e2ee/remote_device_cache.ts";
import type { RemoteDeviceStore } from "../../domain/ports/remote_device_store.ts";
import { KvRemoteDeviceStore } from "../../kv/remote_device_store.ts";

const ROOM = "!room:a.test";
const ALICE = "@alice:a.test";

/** An accepted event of ROOM whose content says "join" (a member event, or any event). */
function fakeEvent(eventId: string): StoredEvent {
  return {
    eventId,
    roomId: ROOM,
    pdu: { content: { membership: "join" } } as unknown as Pdu,
    status: "accepted",
    position: 7,
    versionstamp: "v",
  };
}

/** Event reads where everyone is joined to ROOM (no other state: no server ACL). */
const joinedEverywhere = {
  currentStateEventId: (_roomId: string, type: string, stateKey: string) =>
    Promise.resolve(type === "m.room.member" ? `$member-${stateKey}` : null),
  getEvent: (eventId: string): Promise<StoredEvent | null> => Promise.resolve(fakeEvent(eventId)),
};

Deno.test("remote typing: one server's many joined puppets cannot fill a room's typing record and break local typing", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvTypingStore(kv);
  const service = new TypingService({ store, events: joinedEverywhere });
  try {
    // evil.test joined 2,000 puppets to a public room and sends each one's typing (an m.typing
    // EDU per user passes every check: user of the origin, joined, room shared).
    const failures: unknown[] = [];
    for (let i = 0; i < 2_000; i++) {
      await service.setRemoteTyping(`@puppet-number-${i}:evil.test`, ROOM, true, 60_000)
        .catch((error) => failures.push(error));
    }
    assertEquals(failures, []);
    // A local user typing in that room still works (the record must still fit a KV value), and
    // so does another server's user (one server takes only its share).
    await service.setTyping(ALICE, ROOM, true, 30_000);
    await service.setRemoteTyping("@bob:b.test", ROOM, true, 60_000);
    let users: Record<string, number> = {};
    await store.update(ROOM, (current) => {
      users = current;
      return null;
    });
    assert(ALICE in users && "@bob:b.test" in users);
    const puppets = Object.keys(users).filter((u) => u.endsWith(":evil.test"));
    assertEquals(puppets.length, MAX_REMOTE_TYPING_PER_SERVER);
  } finally {
    service.stop();
    kv.close();
  }
});

Deno.test("remote receipts: thread IDs naming no thread here cannot make a receipt record each", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvReceiptStore(kv);
  const events = new Map<string, StoredEvent>();
  const held = (eventId: string, roomId = ROOM): StoredEvent => {
    const event = { ...fakeEvent(eventId), roomId };
    events.set(eventId, event);
    return event;
  };
  held("$read:a.test");
  held("$root:a.test");
  held("$other-room-root:a.test", "!other:a.test");
  const receipts = new ReceiptService({
    store,
    events: joinedEverywhere,
    accountData: { setFullyRead: () => Promise.resolve() },
  });
  const handler = new ReceiptEduHandler({
    store: {
      ...joinedEverywhere,
      isServerInRoom: () => Promise.resolve(true),
      getEvents: (ids) =>
        Promise.resolve(
          new Map(ids.flatMap((id) => events.has(id) ? [[id, events.get(id)!]] : [])),
        ),
    },
    serverName: "a.test",
    receipts,
  });
  const receipt = (threadId: string) => ({
    [ROOM]: {
      "m.read": {
        "@puppet:evil.test": { event_ids: ["$read:a.test"], data: { ts: 1, thread_id: threadId } },
      },
    },
  });
  try {
    // Every EDU names a new made-up thread: each would be a receipt record kept for good and
    // listed to every member's initial sync.
    for (let i = 0; i < 50; i++) {
      await handler.handle("evil.test", receipt(`$made-up-${i}:evil.test`));
    }
    await handler.handle("evil.test", receipt("$other-room-root:a.test"));
    // A thread whose root is held here, and the main timeline, are taken.
    await handler.handle("evil.test", receipt("$root:a.test"));
    await handler.handle("evil.test", receipt("main"));
    const threads: (string | undefined)[] = [];
    for await (const entry of kv.list<Receipt>({ prefix: receiptPrefix(ROOM) })) {
      threads.push(entry.value.threadId);
    }
    assertEquals(threads.sort(), ["$root:a.test", "main"]);
  } finally {
    kv.close();
  }
});

Deno.test("remote presence: repeating an unchanged presence costs no write per entry", async () => {
  const kv = await Deno.openKv(":memory:");
  const kvStore = new KvPresenceStore(kv);
  let writes = 0;
  const store = {
    get: (userId: string) => kvStore.get(userId),
    getMany: (userIds: readonly string[]) => kvStore.getMany(userIds),
    put: (record: PresenceRecord) => {
      writes++;
      return kvStore.put(record);
    },
    changes: kvStore.changes.bind(kvStore),
  } as unknown as PresenceStore;
  let woken = 0;
  let now = 1_000_000_000;
  const service = new PresenceService({
    store,
    events: { roomsOfUser: () => Promise.resolve([]) },
    notifyPresence: () => woken++,
    now: () => now,
  });
  const handler = new PresenceEduHandler({
    events: {
      roomsOfUser: () => Promise.resolve([{ roomId: ROOM } as Membership]),
      isServerInRoom: () => Promise.resolve(true),
    },
    presence: service,
    serverName: "a.test",
    now: () => now,
  });
  const entry = { user_id: "@puppet:evil.test", presence: "online", currently_active: true };
  try {
    // One EDU naming the user 256 times, then 99 more EDUs saying the same again.
    await handler.handle("evil.test", { push: Array(256).fill(entry) });
    for (let i = 0; i < 99; i++) await handler.handle("evil.test", { push: [entry] });
    assertEquals([writes, woken], [1, 1]);
    // A change is written at once; the same state repeated later (a server's periodic resend
    // that keeps the user from timing out) is written again.
    await handler.handle("evil.test", { push: [{ ...entry, presence: "unavailable" }] });
    assertEquals([writes, woken], [2, 2]);
    now += 10 * 60_000;
    await handler.handle("evil.test", { push: [{ ...entry, presence: "unavailable" }] });
    assertEquals([writes, woken], [3, 2]);
    assertEquals((await kvStore.get("@puppet:evil.test"))?.receivedTs, now);
  } finally {
    kv.close();
  }
});

Deno.test("remote key query: a server cannot answer a query about one user with tens of MiB", async () => {
  await withNetwork(async (net) => {
    const client = new RemoteKeyClient({ transport: net.transportFor("b.test") });
    // 3 MiB of junk about one asked user: more than any honest answer for one user holds.
    const junk = "x".repeat(3 * 1024 * 1024);
    net.intercept((r) =>
      r.destination === "a.test" ? { status: 200, body: { device_keys: {}, junk } } : "deliver"
    );
    await assertRejects(
      () => client.query("a.test", { "@alice:a.test": [] }, 5_000),
      /too large/,
    );
  }, ["a.test", "b.test"]);
});

Deno.test("remote device cache: a small EDU never rewrites a large cached list without the server sending it", async () => {
  const kv = await Deno.openKv(":memory:");
  const inner = new KvRemoteDeviceStore(kv);
  let bytesWritten = 0;
  const store: RemoteDeviceStore = {
    get: (userIds) => inner.get(userIds),
    drop: (userIds) => inner.drop(userIds),
    modify: (userId, decide) =>
      inner.modify(userId, (current) => {
        const decision = decide(current);
        const next = decision.write?.next;
        if (next) bytesWritten += new TextEncoder().encode(JSON.stringify(next)).byteLength;
        return decision;
      }),
  };
  const user = "@many-devices:evil.test";
  const keysOf = (deviceId: string) => ({
    user_id: user,
    device_id: deviceId,
    algorithms: ["m.olm.v1.curve25519-aes-sha2"],
    keys: { [`ed25519:${deviceId}`]: "k".repeat(43), [`curve25519:${deviceId}`]: "c".repeat(43) },
    signatures: { [user]: { [`ed25519:${deviceId}`]: "s".repeat(86) } },
  });
  let streamId = 1;
  let bytesFetched = 0;
  const cache = new RemoteDeviceCache({
    store,
    source: {
      userDevices: () => {
        const snapshot = {
          userId: user,
          streamId,
          devices: Array.from(
            { length: 900 },
            (_, i) => ({ deviceId: `DEV${i}`, keys: keysOf(`DEV${i}`) }),
          ),
        };
        bytesFetched += new TextEncoder().encode(JSON.stringify(snapshot)).byteLength;
        return Promise.resolve(snapshot);
      },
    },
    sharesRoom: () => Promise.resolve(true),
    changed: () => Promise.resolve(),
  });
  const masterKey = (n: number) => ({
    user_id: user,
    usage: ["master"],
    keys: { [`ed25519:${String(n).padStart(43, "m")}`]: String(n).padStart(43, "m") },
  });
  try {
    await cache.resync(user, 1_000);
    const fetchedBefore = bytesFetched;
    const writtenBefore = bytesWritten;
    assert(writtenBefore > 300_000, `${writtenBefore} bytes cached`);
    // 100 EDUs of a few hundred bytes each, as one transaction carries them: signing-key
    // updates alternating two master keys, and device updates each following the last.
    for (let i = 0; i < 50; i++) {
      await cache.applySigningKeys({ userId: user, masterKey: masterKey(i % 2) });
      streamId++;
      await cache.applyUpdate({
        userId: user,
        deviceId: `NEW${i}`,
        streamId,
        prevIds: [streamId - 1],
        deleted: false,
        keys: keysOf(`NEW${i}`),
      });
    }
    // Whatever was written beyond what the server sent in full is small per EDU.
    const extra = (bytesWritten - writtenBefore) - (bytesFetched - fetchedBefore);
    assert(extra <= 100 * 65_536, `${extra} bytes written for 100 small EDUs`);
  } finally {
    kv.close();
  }
});
