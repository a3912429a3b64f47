/**
 * Sliding-sync extensions over the real /sync stream providers and KV stores on `:memory:`:
 * to-device hand-out and acknowledgement by the extension's own `since`, e2ee device lists and
 * key counts, account data (global, per room, rooms sent from scratch), receipts (private ones,
 * rooms sent from scratch cut to their timeline), typing, the `lists`/`rooms` scoping, and the
 * request schema.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  buildExtensions,
  type ExtensionContext,
  extensionProvidersFrom,
  type ExtensionRoom,
  type ExtensionsRequest,
  extensionsRequestSchema,
  hasExtensionNews,
  MAX_EXTENSION_WINDOWS,
  receiptsForTimeline,
  scopedRoomIds,
} from "../../../domain/sliding_sync/extensions.ts";
import { AccountDataStream } from "../../../domain/account_data/account_data_stream.ts";
import { DeviceKeyService } from "../../../domain/e2ee/device_key_service.ts";
import { DeviceListService } from "../../../domain/e2ee/device_list_service.ts";
import { DeviceListStream } from "../../../domain/e2ee/device_list_stream.ts";
import { OneTimeKeyStream } from "../../../domain/e2ee/one_time_key_stream.ts";
import { SignatureNoticeStream } from "../../../domain/e2ee/signature_notice_stream.ts";
import { ToDeviceStream } from "../../../domain/e2ee/to_device_stream.ts";
import { ReceiptStream, TypingStream } from "../../../domain/ephemeral/ephemeral_streams.ts";
import { PushRuleService } from "../../../domain/push/push_rule_service.ts";
import { pushRulesSyncStream } from "../../../domain/push/push_rules_sync.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { SyncStreamProvider } from "../../../domain/sync/sync_stream.ts";
import { KvAccountDataStore } from "../../../kv/account_data_store.ts";
import { KvCrossSigningStore } from "../../../kv/cross_signing_store.ts";
import { KvDeviceKeyStore } from "../../../kv/device_key_store.ts";
import { commitWithDeviceListChanges } from "../../../kv/device_list_log.ts";
import { KvDeviceListReader } from "../../../kv/device_list_reads.ts";
import { KvPushRuleStore } from "../../../kv/push_rule_store.ts";
import { KvReceiptStore } from "../../../kv/receipt_store.ts";
import { KvToDeviceStore } from "../../../kv/to_device_store.ts";
import { KvTypingStore } from "../../../kv/typing_store.ts";
import { memoryStore, RoomBuilder } from "../../kv/event_fixtures.ts";
import { newTestDevice } from "../e2ee/device_keys_fixture.ts";

const ALICE = "@alice:test";
const BOB = "@bob:test";
const CAROL = "@carol:test";
const ROOM = "!room:test";
const OTHER = "!other:test";
const INVITED = "!invited:test";

/** The stores and providers main.ts wires, on one `:memory:` KV. */
async function world() {
  const { kv, store } = await memoryStore();
  const toDevice = new KvToDeviceStore(kv);
  const accountData = new KvAccountDataStore(kv);
  const receipts = new KvReceiptStore(kv);
  const typing = new KvTypingStore(kv);
  const deviceKeyStore = new KvDeviceKeyStore(kv);
  const deviceKeys = new DeviceKeyService({
    store: deviceKeyStore,
    serverName: "test",
    deviceListNotifier: { changed: () => Promise.resolve() },
  });
  const ruleStore = new KvPushRuleStore(kv);
  // The same list, built the same way, as /sync's.
  const streams: SyncStreamProvider[] = [
    new OneTimeKeyStream(deviceKeys),
    new SignatureNoticeStream(new KvCrossSigningStore(kv)),
    new DeviceListStream(new DeviceListService(new KvDeviceListReader(kv))),
    new ToDeviceStream(toDevice),
    pushRulesSyncStream(ruleStore, new PushRuleService(ruleStore)),
    new AccountDataStream(accountData),
    new TypingStream(typing),
    new ReceiptStream(receipts),
  ];
  const limits: number[] = [];
  const providers = extensionProvidersFrom(streams, (limit) => {
    limits.push(limit);
    return new ToDeviceStream(toDevice, limit);
  });
  const token = () => store.syncBarrier(ALICE);
  let sent = 0;
  /** A to-device message from Bob to Alice's PHONE, one commit each. */
  const sendToDevice = async (n: number) => {
    const txn = { sender: BOB, senderDeviceId: "B", txnId: `t${sent++}` };
    const event = new TextEncoder().encode(
      JSON.stringify({ type: "m.test", sender: BOB, content: { n } }),
    );
    await toDevice.deliver(txn, [{ userId: ALICE, deviceId: "PHONE", event }], () => {});
  };
  const receipt = (
    userId: string,
    eventId: string,
    receiptType: "m.read" | "m.read.private",
    roomId = ROOM,
  ) => receipts.put({ roomId, userId, receiptType, eventId, position: 1, ts: 5 });
  return {
    kv,
    store,
    providers,
    limits,
    token,
    sendToDevice,
    accountData,
    receipt,
    typing,
    deviceKeyStore,
    close: () => kv.close(),
  };
}

/** A context whose one list `main` holds ROOM and OTHER (joined) and INVITED (invited). */
function context(
  upTo: string,
  since?: string,
  rooms: Record<string, ExtensionRoom> = {},
): ExtensionContext {
  const all: Record<string, ExtensionRoom> = {
    [ROOM]: { membership: "join", since },
    [OTHER]: { membership: "join", since },
    [INVITED]: { membership: "invite", since },
    ...rooms,
  };
  return {
    userId: ALICE,
    deviceId: "PHONE",
    since,
    upTo,
    lists: { main: [ROOM, OTHER, INVITED] },
    subscriptions: [],
    rooms: new Map(Object.entries(all)),
    now: 1_000,
  };
}

const parse = (body: unknown): ExtensionsRequest => extensionsRequestSchema.parse(body);

Deno.test("to_device: handed out until the client passes next_batch back as since, then deleted", async () => {
  const w = await world();
  try {
    await w.sendToDevice(1);
    await w.sendToDevice(2);
    await w.sendToDevice(3);
    const first = await w.token();
    const request = parse({ to_device: { enabled: true, limit: 2 } });
    const one = await buildExtensions(request, context(first), w.providers);
    assertEquals(one.to_device?.events.map((e) => e.content.n), [1, 2]);
    assertEquals(one.to_device?.events[0], { type: "m.test", sender: BOB, content: { n: 1 } });
    assertEquals(one.to_device?.next_batch, first);
    assert(hasExtensionNews(one));

    // A retry without the acknowledgement gets the same messages again.
    const retryAt = await w.token();
    const retry = await buildExtensions(request, context(retryAt), w.providers);
    assertEquals(retry.to_device?.events.map((e) => e.content.n), [1, 2]);

    // Passing the retry's next_batch acknowledges 1 and 2; 3 follows.
    const next = parse({
      to_device: { enabled: true, limit: 2, since: retry.to_device!.next_batch },
    });
    const twoAt = await w.token();
    const two = await buildExtensions(next, context(twoAt, retryAt), w.providers);
    assertEquals(two.to_device?.events.map((e) => e.content.n), [3]);
    assertEquals(two.to_device?.next_batch, twoAt);

    // Acknowledging 3: the inbox is empty and stays so.
    const last = parse({ to_device: { enabled: true, since: twoAt } });
    const threeAt = await w.token();
    const three = await buildExtensions(last, context(threeAt, twoAt), w.providers);
    assertEquals(three.to_device, { next_batch: threeAt, events: [] });
    assert(!hasExtensionNews(three));
    const again = await buildExtensions(
      parse({ to_device: { enabled: true } }),
      context(await w.token(), threeAt),
      w.providers,
    );
    assertEquals(again.to_device?.events, []);
  } finally {
    w.close();
  }
});

Deno.test("to_device: a message committed after the answer's position waits; the limit is capped at 100", async () => {
  const w = await world();
  try {
    const upTo = await w.token();
    await w.sendToDevice(1);
    const request = parse({ to_device: { enabled: true, limit: 5000 } });
    const early = await buildExtensions(request, context(upTo), w.providers);
    assertEquals(early.to_device?.events, []);
    const later = await buildExtensions(request, context(await w.token()), w.providers);
    assertEquals(later.to_device?.events.map((e) => e.content.n), [1]);
    assertEquals(w.limits, [100, 100]);
  } finally {
    w.close();
  }
});

Deno.test("e2ee: key counts always, device_lists only after the connection's first answer", async () => {
  const w = await world();
  try {
    const device = await newTestDevice(ALICE, "PHONE");
    const otks = await device.oneTimeKeys(3);
    const fallback = await device.fallbackKey("FB");
    const keys = (entries: Record<string, JsonObject | string>) =>
      Object.entries(entries).map(([name, key]) => {
        const colon = name.indexOf(":");
        return { algorithm: name.slice(0, colon), keyId: name.slice(colon + 1), key };
      });
    await w.deviceKeyStore.upload(ALICE, "PHONE", {
      oneTimeKeys: keys(otks),
      fallbackKeys: keys(fallback),
    });
    // Alice and Bob share a room.
    const room = new RoomBuilder(ROOM);
    await w.store.append({
      roomId: ROOM,
      events: [room.create(), room.member(ALICE, "join"), room.member(BOB, "join")],
    });
    const request = parse({ e2ee: { enabled: true } });
    const first = await w.token();
    const initial = await buildExtensions(request, context(first), w.providers);
    assertEquals(initial.e2ee, {
      device_one_time_keys_count: { signed_curve25519: 3 },
      device_unused_fallback_key_types: ["signed_curve25519"],
    });
    // Counts are a snapshot, not news.
    assert(!hasExtensionNews(initial));

    await commitWithDeviceListChanges(w.kv, (_op, changes) => {
      changes.add(BOB, { deviceIds: ["BOBDEV"] });
      return Promise.resolve(true);
    });
    const second = await w.token();
    const incremental = await buildExtensions(request, context(second, first), w.providers);
    assertEquals(incremental.e2ee?.device_lists, { changed: [BOB], left: [] });
    assertEquals(incremental.e2ee?.device_one_time_keys_count, { signed_curve25519: 3 });
    assert(hasExtensionNews(incremental));

    const quiet = await buildExtensions(request, context(await w.token(), second), w.providers);
    assertEquals(quiet.e2ee?.device_lists, { changed: [], left: [] });
  } finally {
    w.close();
  }
});

Deno.test("account_data: everything first, then changes; a room sent from scratch gets all of its own", async () => {
  const w = await world();
  try {
    await w.accountData.put(ALICE, null, "m.direct", { [BOB]: [ROOM] });
    await w.accountData.put(ALICE, ROOM, "m.tag", { tags: { "m.favourite": {} } });
    await w.accountData.put(ALICE, OTHER, "org.example", { a: 1 });
    await w.accountData.put(ALICE, "!elsewhere:test", "org.example", { not: "listed" });
    const request = parse({ account_data: { enabled: true } });
    const first = await w.token();
    const initial = (await buildExtensions(request, context(first), w.providers)).account_data!;
    // Push rules ride in the global account data, as /sync's do.
    assertEquals(initial.global.map((e) => e.type).sort(), ["m.direct", "m.push_rules"]);
    assertEquals(initial.rooms, {
      [ROOM]: [{ type: "m.tag", content: { tags: { "m.favourite": {} } } }],
      [OTHER]: [{ type: "org.example", content: { a: 1 } }],
    });

    await w.accountData.put(ALICE, null, "org.example.global", { b: 2 });
    await w.accountData.put(ALICE, OTHER, "org.example", { a: 2 });
    const second = await w.token();
    const incremental = await buildExtensions(request, context(second, first), w.providers);
    assertEquals(incremental.account_data, {
      global: [{ type: "org.example.global", content: { b: 2 } }],
      rooms: { [OTHER]: [{ type: "org.example", content: { a: 2 } }] },
    });

    // ROOM comes back from scratch (the client dropped it): its unchanged tag is sent again,
    // and nothing global is repeated.
    const third = await w.token();
    const fresh = await buildExtensions(
      request,
      context(third, second, { [ROOM]: { membership: "join" } }),
      w.providers,
    );
    assertEquals(fresh.account_data, {
      global: [],
      rooms: { [ROOM]: [{ type: "m.tag", content: { tags: { "m.favourite": {} } } }] },
    });
  } finally {
    w.close();
  }
});

Deno.test("account_data: a room held up to an older position gets what changed since then", async () => {
  const w = await world();
  try {
    const request = parse({ account_data: { enabled: true } });
    const first = await w.token();
    await w.accountData.put(ALICE, OTHER, "org.example", { while: "out of range" });
    const second = await w.token();
    await w.accountData.put(ALICE, ROOM, "org.example", { now: true });
    const third = await w.token();
    // OTHER was last sent at `first`, ROOM is up to date at `second`.
    const ctx = context(third, second, { [OTHER]: { membership: "join", since: first } });
    const answer = (await buildExtensions(request, ctx, w.providers)).account_data!;
    assertEquals(answer.rooms, {
      [ROOM]: [{ type: "org.example", content: { now: true } }],
      [OTHER]: [{ type: "org.example", content: { while: "out of range" } }],
    });
    assertEquals(answer.global, []);
  } finally {
    w.close();
  }
});

Deno.test("receipts: one m.receipt per joined room, private ones only the owner's, none for invites", async () => {
  const w = await world();
  try {
    await w.receipt(BOB, "$e1", "m.read");
    await w.receipt(ALICE, "$e0", "m.read.private");
    await w.receipt(CAROL, "$e1", "m.read.private");
    await w.receipt(BOB, "$i1", "m.read", INVITED);
    const request = parse({ receipts: { enabled: true } });
    const first = await w.token();
    const initial = await buildExtensions(request, context(first), w.providers);
    assertEquals(initial.receipts, {
      rooms: {
        [ROOM]: {
          type: "m.receipt",
          content: {
            $e1: { "m.read": { [BOB]: { ts: 5 } } },
            $e0: { "m.read.private": { [ALICE]: { ts: 5 } } },
          },
        },
      },
    });

    await w.receipt(CAROL, "$e2", "m.read");
    const second = await w.token();
    const incremental = await buildExtensions(request, context(second, first), w.providers);
    assertEquals(incremental.receipts?.rooms, {
      [ROOM]: { type: "m.receipt", content: { $e2: { "m.read": { [CAROL]: { ts: 5 } } } } },
    });
    assert(hasExtensionNews(incremental));
    const quiet = await buildExtensions(request, context(await w.token(), second), w.providers);
    assertEquals(quiet.receipts, { rooms: {} });
  } finally {
    w.close();
  }
});

Deno.test("receipts: a room sent from scratch carries those on its timeline and the user's own", async () => {
  const w = await world();
  try {
    await w.receipt(BOB, "$old", "m.read");
    await w.receipt(CAROL, "$shown", "m.read");
    await w.receipt(ALICE, "$older", "m.read");
    const request = parse({ receipts: { enabled: true } });
    const ctx = context(await w.token(), undefined, {
      [ROOM]: { membership: "join", timelineEventIds: ["$shown"] },
    });
    const answer = await buildExtensions(request, ctx, w.providers);
    assertEquals(answer.receipts?.rooms[ROOM].content, {
      $shown: { "m.read": { [CAROL]: { ts: 5 } } },
      $older: { "m.read": { [ALICE]: { ts: 5 } } },
    });
  } finally {
    w.close();
  }
});

Deno.test("typing: current typers first, then changes (an emptied list included), never expired ones", async () => {
  const w = await world();
  try {
    await w.typing.update(ROOM, () => ({ [BOB]: 60_000, [CAROL]: 500 }));
    await w.typing.update(INVITED, () => ({ [BOB]: 60_000 }));
    const request = parse({ typing: { enabled: true } });
    const first = await w.token();
    const initial = await buildExtensions(request, context(first), w.providers);
    // Carol's typing expired at 500 (now is 1,000); the invited room shows nothing.
    assertEquals(initial.typing, {
      rooms: { [ROOM]: { type: "m.typing", content: { user_ids: [BOB] } } },
    });

    await w.typing.update(ROOM, () => ({}));
    const second = await w.token();
    const stopped = await buildExtensions(request, context(second, first), w.providers);
    assertEquals(stopped.typing?.rooms, {
      [ROOM]: { type: "m.typing", content: { user_ids: [] } },
    });
  } finally {
    w.close();
  }
});

Deno.test("per-room extensions cover only the lists and subscriptions they name", () => {
  const base = context("s00000000000000000001");
  const ctx: ExtensionContext = {
    ...base,
    lists: { dms: [ROOM], groups: [OTHER] },
    subscriptions: [INVITED, "!unknown:test"],
  };
  const scope = (body: JsonObject) => scopedRoomIds(parse({ typing: body }).typing!, ctx).sort();
  // Absent scopes mean every list and every subscription; a room the caller did not describe
  // (no membership known) is left out.
  assertEquals(scope({ enabled: true }), [INVITED, OTHER, ROOM].sort());
  assertEquals(scope({ lists: ["dms"], rooms: [] }), [ROOM]);
  assertEquals(scope({ lists: ["*"], rooms: null }), [OTHER, ROOM].sort());
  assertEquals(scope({ lists: [], rooms: [INVITED, "!notsubscribed:test"] }), [INVITED]);
  assertEquals(scope({ lists: ["nosuchlist"], rooms: [] }), []);
});

Deno.test("disabled or absent extensions are left out of the answer and read nothing", async () => {
  const w = await world();
  try {
    const upTo = await w.token();
    assertEquals(await buildExtensions(undefined, context(upTo), w.providers), {});
    const request = parse({
      to_device: { enabled: false },
      e2ee: {},
      account_data: null,
      receipts: { enabled: false },
      "org.example.unknown": { enabled: true },
    });
    assertEquals(await buildExtensions(request, context(upTo), w.providers), {});
    assertEquals(w.limits, []);
  } finally {
    w.close();
  }
});

Deno.test("the request schema rejects a to-device since this server never issued and bad limits", () => {
  assert(!extensionsRequestSchema.safeParse({ to_device: { since: "12" } }).success);
  assert(!extensionsRequestSchema.safeParse({ to_device: { limit: -1 } }).success);
  assert(!extensionsRequestSchema.safeParse({ to_device: { limit: 1.5 } }).success);
  assert(!extensionsRequestSchema.safeParse({ receipts: { lists: "main" } }).success);
  assert(!extensionsRequestSchema.safeParse({ e2ee: { enabled: "yes" } }).success);
  const parsed = parse({ to_device: { enabled: true, since: null }, unknown: 1 });
  assertEquals(parsed, { to_device: { enabled: true, since: null } });
});

Deno.test("extensionProvidersFrom refuses a provider list missing a stream", () => {
  let message = "";
  try {
    extensionProvidersFrom([], () => ({ name: "to_device", fill: () => Promise.resolve() }));
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message.includes("no /sync stream named"), message);
});

Deno.test("receiptsForTimeline keeps the shown events' receipts and the user's own", () => {
  const content = {
    $a: { "m.read": { [BOB]: { ts: 1 }, [ALICE]: { ts: 2 } } },
    $b: { "m.read": { [BOB]: { ts: 3 } }, "m.read.private": { [ALICE]: { ts: 4 } } },
  };
  assertEquals(receiptsForTimeline(content, ["$b"], ALICE), {
    $a: { "m.read": { [ALICE]: { ts: 2 } } },
    $b: { "m.read": { [BOB]: { ts: 3 } }, "m.read.private": { [ALICE]: { ts: 4 } } },
  });
});

Deno.test("each position rooms are held up to is its own window, the oldest past the cap share one", async () => {
  const w = await world();
  try {
    const marks: string[] = [await w.token()];
    // Bob types in both rooms after the first mark.
    await w.typing.update(ROOM, () => ({ [BOB]: 60_000 }));
    await w.typing.update(OTHER, () => ({ [BOB]: 60_000 }));
    for (let i = 1; i < MAX_EXTENSION_WINDOWS + 3; i++) marks.push(await w.token());
    const connection = marks.at(-1)!;
    const windows: (string | undefined)[] = [];
    const counting: SyncStreamProvider = {
      name: "typing",
      fill: (request, response) => {
        windows.push(request.since);
        return w.providers.typing.fill(request, response);
      },
    };
    const now = await w.token();
    const run = async (rooms: Record<string, ExtensionRoom>) => {
      windows.length = 0;
      const ctx = { ...context(now, connection, rooms), lists: { main: Object.keys(rooms) } };
      return (await buildExtensions(
        parse({ typing: { enabled: true } }),
        ctx,
        { ...w.providers, typing: counting },
      )).typing?.rooms;
    };
    // ROOM was last sent after Bob's typing: nothing again. OTHER was last sent before it.
    const few = await run({
      [ROOM]: { membership: "join", since: marks[1] },
      [OTHER]: { membership: "join", since: marks[0] },
      "!fresh:test": { membership: "join" },
    });
    assertEquals(windows.sort(), [marks[0], marks[1], undefined].sort());
    assertEquals(few, { [OTHER]: { type: "m.typing", content: { user_ids: [BOB] } } });

    // More distinct positions than the cap: the oldest share the window of the oldest.
    const many: Record<string, ExtensionRoom> = {};
    marks.forEach((mark, i) => many[`!r${i}:test`] = { membership: "join", since: mark });
    await run(many);
    assertEquals(windows.length, MAX_EXTENSION_WINDOWS);
    assert(windows.includes(marks[0]) && windows.includes(connection));
    assert(!windows.includes(marks[1]) && !windows.includes(marks[3]));
  } finally {
    w.close();
  }
});
