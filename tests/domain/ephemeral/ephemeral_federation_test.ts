/**
 * The pieces behind typing and receipts over federation, without a network: when the typing
 * sender sends (start, stop, refresh only when receivers' copy runs low), the typing and receipt
 * services' hooks (local changes go out, remote ones never do and move no unread counts),
 * remote typing expiring and waking the room's syncs, and which receipt replaces which.
 */
import { assertEquals } from "../../assert.ts";
import { TypingService } from "../../../domain/ephemeral/typing_service.ts";
import { ReceiptService } from "../../../domain/ephemeral/receipt_service.ts";
import {
  DEFAULT_REMOTE_TYPING_MS,
  remoteTimeout,
  TypingEduSender,
} from "../../../domain/federation/edus/typing_edu.ts";
import {
  receiptEduContent,
  ReceiptEduSender,
} from "../../../domain/federation/edus/receipt_edu.ts";
import type { Edu } from "../../../domain/federation/federation_transactions.ts";
import {
  type Receipt,
  receiptSupersedes,
  UNKNOWN_EVENT_POSITION,
} from "../../../domain/ports/receipt_store.ts";
import type { StoredEvent } from "../../../domain/ports/event_store.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import { KvTypingStore } from "../../../kv/typing_store.ts";
import { KvReceiptStore } from "../../../kv/receipt_store.ts";

const ROOM = "!room:a.test";
const ALICE = "@alice:a.test";

/** A typing sender over fake room servers and outbox, on a clock the test moves. */
function typingSender() {
  let now = 1_000_000;
  const sent: { destination: string; edu: Edu }[][] = [];
  const sender = new TypingEduSender({
    store: {
      serversInRoom: () => Promise.resolve(new Map([["a.test", 1], ["b.test", 2], ["c.test", 1]])),
    },
    serverName: "a.test",
    sender: {
      sendEdus: (entries) => {
        sent.push([...entries]);
        return Promise.resolve();
      },
    },
    now: () => now,
  });
  const change = (typing: boolean, wasTyping: boolean, timeoutMs = 30_000) =>
    sender.typingChanged({ roomId: ROOM, userId: ALICE, typing, wasTyping, timeoutMs });
  return { sender, sent, change, advance: (ms: number) => now += ms };
}

Deno.test("typing sender: a start goes to the room's other servers with its timeout", async () => {
  const t = typingSender();
  await t.change(true, false, 20_000);
  assertEquals(t.sent, [[
    {
      destination: "b.test",
      edu: {
        edu_type: "m.typing",
        content: { room_id: ROOM, user_id: ALICE, typing: true, timeout: 20_000 },
      },
    },
    {
      destination: "c.test",
      edu: {
        edu_type: "m.typing",
        content: { room_id: ROOM, user_id: ALICE, typing: true, timeout: 20_000 },
      },
    },
  ]]);
});

Deno.test("typing sender: refreshes go out only when receivers' copy would soon run out", async () => {
  const t = typingSender();
  await t.change(true, false, 30_000);
  // Keystrokes refreshing every second: nothing new for receivers holding it 30 s.
  for (let i = 0; i < 19; i++) {
    t.advance(1_000);
    await t.change(true, true, 30_000);
  }
  assertEquals(t.sent.length, 1);
  // 21 s after the start the receivers' copy has under 10 s left: refreshed.
  t.advance(2_000);
  await t.change(true, true, 30_000);
  assertEquals(t.sent.length, 2);
  // A short timeout is refreshed once half of it has gone.
  const short = typingSender();
  await short.change(true, false, 4_000);
  short.advance(1_000);
  await short.change(true, true, 4_000);
  assertEquals(short.sent.length, 1);
  short.advance(1_500);
  await short.change(true, true, 4_000);
  assertEquals(short.sent.length, 2);
});

Deno.test("typing sender: a stop goes out while receivers may show the user; not long after", async () => {
  const t = typingSender();
  await t.change(true, false);
  await t.change(false, true);
  assertEquals(t.sent.length, 2);
  assertEquals(t.sent[1][0].edu.content, { room_id: ROOM, user_id: ALICE, typing: false });
  // Nothing was typing: a stop says nothing new.
  await t.change(false, false);
  assertEquals(t.sent.length, 2);
  // Expired here, but a receiver holding typing 60 s (Synapse) may still show it.
  await t.change(true, false, 5_000);
  t.advance(20_000);
  await t.change(false, false);
  assertEquals(t.sent.length, 4);
  // Long after the start no receiver shows it any more.
  await t.change(true, false, 5_000);
  t.advance(60_000);
  await t.change(false, false);
  assertEquals(t.sent.length, 5);
  // A process that never sent the start (another isolate did) sends the start again.
  const other = typingSender();
  await other.change(true, true);
  assertEquals(other.sent.length, 1);
});

Deno.test("typing sender: queueing failing is logged and never thrown; the next change retries", async () => {
  const logged: unknown[] = [];
  let fail = true;
  let sends = 0;
  const sender = new TypingEduSender({
    store: { serversInRoom: () => Promise.resolve(new Map([["b.test", 1]])) },
    serverName: "a.test",
    sender: {
      sendEdus: () => {
        if (fail) return Promise.reject(new Error("KV down"));
        sends++;
        return Promise.resolve();
      },
    },
    log: (message) => logged.push(message),
  });
  const change = { roomId: ROOM, userId: ALICE, typing: true, wasTyping: false, timeoutMs: 30_000 };
  await sender.typingChanged(change);
  assertEquals(logged.length, 1);
  fail = false;
  await sender.typingChanged({ ...change, wasTyping: true });
  assertEquals(sends, 1);
});

Deno.test("remote typing timeout: the EDU's when usable, bounded, else Synapse's 60 s hold", () => {
  assertEquals(remoteTimeout(12_000), 12_000);
  assertEquals(remoteTimeout(10 ** 9), 60_000);
  assertEquals(remoteTimeout(undefined), DEFAULT_REMOTE_TYPING_MS);
  assertEquals(remoteTimeout(-5), DEFAULT_REMOTE_TYPING_MS);
  assertEquals(remoteTimeout("30000"), DEFAULT_REMOTE_TYPING_MS);
  assertEquals(remoteTimeout(Number.NaN), DEFAULT_REMOTE_TYPING_MS);
});

/** Event reads where everyone is joined to ROOM. */
const joinedEverywhere = {
  currentStateEventId: (_roomId: string, _type: string, stateKey: string) =>
    Promise.resolve(`$member-${stateKey}`),
  getEvent: (eventId: string): Promise<StoredEvent | null> =>
    Promise.resolve({
      eventId,
      roomId: ROOM,
      pdu: { content: { membership: "join" } } as unknown as Pdu,
      status: "accepted",
      position: 7,
      versionstamp: "v",
    }),
};

Deno.test("typing service: local changes go to the hook, remote ones do not; remote typing expires and wakes syncs", async () => {
  const kv = await Deno.openKv(":memory:");
  const changes: unknown[] = [];
  const woken: string[] = [];
  let onWake = () => {};
  const store = new KvTypingStore(kv);
  const service = new TypingService({
    store,
    events: joinedEverywhere,
    notifyRoom: (roomId) => {
      woken.push(roomId);
      onWake();
    },
    federation: {
      typingChanged: (change) => {
        changes.push(change);
        return Promise.resolve();
      },
    },
  });
  try {
    await service.setTyping(ALICE, ROOM, true, 90_000);
    await service.setTyping(ALICE, ROOM, true, 10_000);
    await service.setTyping(ALICE, ROOM, false);
    assertEquals(changes, [
      { roomId: ROOM, userId: ALICE, typing: true, wasTyping: false, timeoutMs: 30_000 },
      { roomId: ROOM, userId: ALICE, typing: true, wasTyping: true, timeoutMs: 10_000 },
      { roomId: ROOM, userId: ALICE, typing: false, wasTyping: true, timeoutMs: 0 },
    ]);

    // Bob of b.test types for 20 ms: stored and syncs woken, then woken again when it expires
    // here (no EDU from b.test needed). Carol, not typing, stopping changes nothing.
    woken.length = 0;
    const expired = new Promise<void>((resolve) => {
      onWake = () => {
        if (woken.length === 2) resolve();
      };
    });
    await service.setRemoteTyping("@bob:b.test", ROOM, true, 20);
    await service.setRemoteTyping("@carol:b.test", ROOM, false, 0);
    await expired;
    assertEquals(woken, [ROOM, ROOM]);
    let after: Record<string, number> | undefined;
    await store.update(ROOM, (users) => {
      after = users;
      return null;
    });
    assertEquals(after, {});
    // Neither of b.test's users went to the federation hook.
    assertEquals(changes.length, 3);
  } finally {
    service.stop();
    kv.close();
  }
});

Deno.test("receipt service: public local receipts go to the hook, private ones and remote ones do not", async () => {
  const kv = await Deno.openKv(":memory:");
  const federated: Receipt[] = [];
  const moved: string[] = [];
  const woken: string[] = [];
  const service = new ReceiptService({
    store: new KvReceiptStore(kv),
    events: joinedEverywhere,
    accountData: { setFullyRead: () => Promise.resolve() },
    notifyRoom: (roomId) => woken.push(roomId),
    readReceiptMoved: (userId) => moved.push(userId),
    federation: {
      receiptSent: (receipt) => {
        federated.push(receipt);
        return Promise.resolve();
      },
    },
    now: () => 1234,
  });
  try {
    await service.sendReceipt(ALICE, ROOM, "m.read.private", "$e:a.test");
    assertEquals(federated, []);
    await service.sendReceipt(ALICE, ROOM, "m.read", "$e:a.test", "main");
    assertEquals(federated, [{
      roomId: ROOM,
      userId: ALICE,
      receiptType: "m.read",
      eventId: "$e:a.test",
      position: 7,
      ts: 1234,
      threadId: "main",
    }]);
    assertEquals(moved, [ALICE, ALICE]);

    const remote: Receipt = {
      roomId: ROOM,
      userId: "@bob:b.test",
      receiptType: "m.read",
      eventId: "$e:a.test",
      position: 7,
      ts: 99,
    };
    woken.length = 0;
    assertEquals(await service.receiveRemote(remote), true);
    assertEquals(await service.receiveRemote(remote), false);
    assertEquals(woken, [ROOM]);
    // Bob's receipt is his: nobody's counts moved, nothing went out again.
    assertEquals(moved, [ALICE, ALICE]);
    assertEquals(federated.length, 1);
    assertEquals(await service.latestReceipt("@bob:b.test", ROOM), remote);
  } finally {
    kv.close();
  }
});

Deno.test("receipt sender: one EDU per other server, ts and thread in data; private ones never", async () => {
  const sent: { destination: string; edu: Edu }[] = [];
  const sender = new ReceiptEduSender({
    store: { serversInRoom: () => Promise.resolve(new Map([["a.test", 3], ["b.test", 1]])) },
    serverName: "a.test",
    sender: {
      sendEdus: (entries) => {
        sent.push(...entries);
        return Promise.resolve();
      },
    },
  });
  const receipt: Receipt = {
    roomId: ROOM,
    userId: ALICE,
    receiptType: "m.read",
    eventId: "$e:a.test",
    position: 3,
    ts: 42,
    threadId: "$root:a.test",
  };
  await sender.receiptSent({ ...receipt, receiptType: "m.read.private" });
  assertEquals(sent, []);
  await sender.receiptSent(receipt);
  const content = {
    [ROOM]: {
      "m.read": {
        [ALICE]: { event_ids: ["$e:a.test"], data: { ts: 42, thread_id: "$root:a.test" } },
      },
    },
  };
  assertEquals(receiptEduContent(receipt), content);
  assertEquals(sent, [{ destination: "b.test", edu: { edu_type: "m.receipt", content } }]);
});

Deno.test("receipts: which replaces which (forward only; unknown events: the newer one)", () => {
  const at = (eventId: string, position: number): Receipt => ({
    roomId: ROOM,
    userId: "@bob:b.test",
    receiptType: "m.read",
    eventId,
    position,
    ts: 1,
  });
  assertEquals(receiptSupersedes(null, at("$1", 1)), true);
  assertEquals(receiptSupersedes(at("$1", 1), at("$2", 2)), true);
  assertEquals(receiptSupersedes(at("$2", 2), at("$1", 1)), false);
  assertEquals(receiptSupersedes(at("$1", 1), at("$1", 1)), false);
  // Backfilled history counts down below the room's first position: still ordered.
  assertEquals(receiptSupersedes(at("$old", -5), at("$1", 1)), true);
  assertEquals(receiptSupersedes(at("$1", 1), at("$x", UNKNOWN_EVENT_POSITION)), true);
  assertEquals(receiptSupersedes(at("$x", UNKNOWN_EVENT_POSITION), at("$1", 1)), true);
  assertEquals(
    receiptSupersedes(at("$x", UNKNOWN_EVENT_POSITION), at("$x", UNKNOWN_EVENT_POSITION)),
    false,
  );
});
