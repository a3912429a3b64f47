/**
 * The send-to-device use case over the real KV store and a fake device directory: `*`, named
 * and unknown devices, remote users (EDUs in the request's commit), other servers' messages
 * once per message ID, validation before any write, transaction idempotency,
 * wake-ups, the deletion race, and the sync stream's event shape.
 */
import { assert, assertEquals } from "../../assert.ts";
import { ToDeviceService } from "../../../domain/e2ee/to_device_service.ts";
import { ToDeviceStream } from "../../../domain/e2ee/to_device_stream.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { ToDeviceEvent, ToDeviceSyncRequest } from "../../../domain/ports/to_device_store.ts";
import { emptySyncResponse } from "../../../domain/sync/sync_response.ts";
import { KvToDeviceStore } from "../../../kv/to_device_store.ts";
import { e2eeKeys, outboxKeys } from "../../../kv/schema.ts";
import { KvOutboxStore } from "../../../kv/outbox_store.ts";
import { FEDERATION_STREAM } from "../../../domain/federation/federation_transactions.ts";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";

async function setup(devices: Record<string, string[]>) {
  const kv = await Deno.openKv(":memory:");
  const store = new KvToDeviceStore(kv);
  const wakes: [string, string][] = [];
  const listings: string[] = [];
  const directory = {
    devices,
    listDevices(userId: string) {
      listings.push(userId);
      return Promise.resolve((this.devices[userId] ?? []).map((deviceId) => ({ deviceId })));
    },
  };
  const service = new ToDeviceService({
    store,
    devices: directory,
    serverName: "example.org",
    notifyUser: (userId, versionstamp) => wakes.push([userId, versionstamp]),
  });
  const inbox = async (userId: string, deviceId: string) => {
    const out: JsonObject[] = [];
    const prefix = e2eeKeys.toDeviceInboxPrefix(userId, deviceId);
    for await (const e of kv.list<Uint8Array>({ prefix })) {
      out.push(JSON.parse(new TextDecoder().decode(e.value)));
    }
    return out;
  };
  const count = async () => {
    let n = 0;
    for await (const _ of kv.list({ prefix: [] })) n++;
    return n;
  };
  return { kv, store, service, wakes, listings, directory, inbox, count };
}

function request(txnId: string, messages: Record<string, Record<string, JsonObject>>) {
  return { sender: ALICE, senderDeviceId: "A1", txnId, eventType: "m.test", messages };
}

Deno.test("`*` reaches every device, a named device gets its own content, unknown ones are skipped", async () => {
  const t = await setup({ [BOB]: ["B1", "B2", "B3"], [ALICE]: ["A1", "A2"] });
  try {
    await t.service.send(request("t1", {
      [BOB]: { "*": { to: "all" }, B2: { to: "b2" } },
      [ALICE]: { A2: { to: "a2" }, NOPE: { to: "nobody" } },
      "@carol:example.org": { "*": { to: "no account" } },
    }));
    assertEquals(await t.inbox(BOB, "B1"), [{
      type: "m.test",
      sender: ALICE,
      content: { to: "all" },
    }]);
    assertEquals((await t.inbox(BOB, "B2")).map((e) => e.content), [{ to: "b2" }]);
    assertEquals((await t.inbox(BOB, "B3")).map((e) => e.content), [{ to: "all" }]);
    assertEquals((await t.inbox(ALICE, "A2")).map((e) => e.content), [{ to: "a2" }]);
    assertEquals(await t.inbox(ALICE, "A1"), []);
    assertEquals(await t.inbox(ALICE, "NOPE"), []);
    // One commit; both recipients are woken with its raw versionstamp.
    assertEquals(t.wakes.map(([u]) => u).sort(), [ALICE, BOB]);
    assertEquals(new Set(t.wakes.map(([, v]) => v)).size, 1);
    assert(/^[0-9a-f]{20}$/.test(t.wakes[0][1]));
  } finally {
    t.kv.close();
  }
});

Deno.test("without a federation outbox, users of other servers are skipped", async () => {
  const t = await setup({ [BOB]: ["B1"] });
  try {
    await t.service.send(request("t1", {
      "@dave:elsewhere.example": { D1: { x: 1 } },
      [BOB]: { B1: { x: 2 } },
    }));
    assertEquals(t.listings, [BOB, BOB]); // resolve, then the post-commit look
    assertEquals((await t.inbox(BOB, "B1")).map((e) => e.content), [{ x: 2 }]);
  } finally {
    t.kv.close();
  }
});

Deno.test("users of other servers get one EDU per server in the request's commit, queued once", async () => {
  const t = await setup({ [BOB]: ["B1"] });
  try {
    const outbox = new KvOutboxStore(t.kv, FEDERATION_STREAM);
    let wakes = 0;
    let sequence = 0;
    const service = new ToDeviceService({
      store: t.store,
      devices: t.directory,
      serverName: "example.org",
      notifyUser: () => {},
      federation: {
        eduMutations: (entries) =>
          outbox.mutations(entries.map(({ destination, edu }) => ({
            destination,
            order: [sequence++],
            payload: { kind: "edu", edu_type: edu.edu_type, content: edu.content },
          }))),
        wake: () => wakes++,
      },
    });
    const body = request("t1", {
      "@dave:one.example": { D1: { x: 1 } },
      "@erin:one.example": { "*": { x: 2 } },
      "@fay:two.example": { F1: { x: 3 } },
      [BOB]: { B1: { x: 4 } },
    });
    await service.send(body);
    await service.send(body);
    assertEquals(wakes, 1, "woken once, after the commit that queued them");
    const queued = async (destination: string) =>
      (await outbox.peek(destination, 10)).map((e) => e.payload.content as JsonObject);
    const one = await queued("one.example");
    assertEquals(one.length, 1);
    assertEquals(one[0].sender, ALICE);
    assertEquals(one[0].type, "m.test");
    assertEquals(one[0].messages, {
      "@dave:one.example": { D1: { x: 1 } },
      "@erin:one.example": { "*": { x: 2 } },
    });
    assertEquals((await queued("two.example")).map((c) => c.messages), [
      { "@fay:two.example": { F1: { x: 3 } } },
    ]);
    assertEquals((await t.inbox(BOB, "B1")).map((e) => e.content), [{ x: 4 }]);
    // One commit: the EDUs and the local inbox entry carry the same versionstamp.
    const stamps = new Set<string>();
    for (
      const prefix of [
        outboxKeys.entryPrefix(FEDERATION_STREAM, "one.example"),
        outboxKeys.entryPrefix(FEDERATION_STREAM, "two.example"),
        e2eeKeys.toDeviceInboxPrefix(BOB, "B1"),
      ]
    ) {
      for await (const entry of t.kv.list({ prefix })) stamps.add(entry.versionstamp);
    }
    assertEquals(stamps.size, 1);
  } finally {
    t.kv.close();
  }
});

Deno.test("another server's messages reach every named or `*` device once per message ID", async () => {
  const t = await setup({ [BOB]: ["B1", "B2"] });
  try {
    const message = {
      origin: "remote.example",
      messageId: "m1",
      sender: "@zed:remote.example",
      eventType: "m.room_key_request",
      messages: new Map([[BOB, new Map([["*", { k: 1 }]])]]),
    };
    await t.service.receiveRemote(message);
    await t.service.receiveRemote(message);
    for (const device of ["B1", "B2"]) {
      assertEquals(await t.inbox(BOB, device), [
        { type: "m.room_key_request", sender: "@zed:remote.example", content: { k: 1 } },
      ]);
    }
    assertEquals(t.wakes.map(([userId]) => userId), [BOB]);
  } finally {
    t.kv.close();
  }
});

Deno.test("a repeated transaction ID delivers nothing and wakes nobody; another device's is new", async () => {
  const t = await setup({ [BOB]: ["B1"] });
  try {
    const body = { [BOB]: { B1: { n: 1 } } };
    await t.service.send(request("same", body));
    await t.service.send(request("same", body));
    assertEquals((await t.inbox(BOB, "B1")).length, 1);
    assertEquals(t.wakes.length, 1);
    await t.service.send({ ...request("same", body), senderDeviceId: "A2" });
    assertEquals((await t.inbox(BOB, "B1")).length, 2);
  } finally {
    t.kv.close();
  }
});

Deno.test("bad user IDs, device IDs and oversize messages are refused before anything is written", async () => {
  const t = await setup({ [BOB]: ["B1"] });
  try {
    const before = await t.count();
    const cases: [Record<string, Record<string, JsonObject>>, string, number][] = [
      [{ [BOB]: { B1: {} }, "not-a-user": { D: {} } }, "M_INVALID_PARAM", 400],
      [{ [BOB]: { B1: {}, "bad\u0001device": {} } }, "M_INVALID_PARAM", 400],
      [{ [BOB]: { B1: {}, B2: { pad: "x".repeat(70_000) } } }, "M_TOO_LARGE", 413],
    ];
    for (const [messages, errcode, status] of cases) {
      const error = await t.service.send(request("bad", messages)).then(
        () => null,
        (e: unknown) => e,
      );
      assert(error instanceof MatrixError, String(error));
      assertEquals([error.errcode, error.status], [errcode, status]);
    }
    assertEquals(await t.count(), before);
    assertEquals(t.wakes, []);
  } finally {
    t.kv.close();
  }
});

Deno.test("a device deleted while a send resolves does not keep an orphaned inbox", async () => {
  const t = await setup({ [BOB]: ["B1", "B2"] });
  try {
    // B2 goes (and its removal hook runs) between resolving and committing.
    const original = t.directory.listDevices.bind(t.directory);
    let calls = 0;
    t.directory.listDevices = async (userId: string) => {
      const devices = await original(userId);
      if (++calls === 1) {
        t.directory.devices = { [BOB]: ["B1"] };
        await t.service.devicesRemoved(BOB, ["B2"]);
      }
      return devices;
    };
    await t.service.send(request("t", { [BOB]: { "*": { n: 1 } } }));
    assertEquals((await t.inbox(BOB, "B1")).length, 1);
    assertEquals(await t.inbox(BOB, "B2"), []);
  } finally {
    t.kv.close();
  }
});

Deno.test("devicesRemoved empties the devices' inboxes", async () => {
  const t = await setup({ [BOB]: ["B1", "B2"] });
  try {
    await t.service.send(request("t", { [BOB]: { "*": { n: 1 } } }));
    await t.service.devicesRemoved(BOB, ["B1", "B2"]);
    assertEquals(await t.inbox(BOB, "B1"), []);
    assertEquals(await t.inbox(BOB, "B2"), []);
  } finally {
    t.kv.close();
  }
});

Deno.test("the sync stream asks for its cap and adds {type, sender, content} in order", async () => {
  const asked: ToDeviceSyncRequest[] = [];
  const stored: ToDeviceEvent[] = [
    { type: "m.a", sender: ALICE, content: { n: 1 } },
    { type: "m.b", sender: BOB, content: { n: 2 } },
  ];
  const stream = new ToDeviceStream({
    takeForSync: (request) => {
      asked.push(request);
      return Promise.resolve(stored);
    },
  });
  const response = emptySyncResponse("s00000000000000000002");
  await stream.fill({
    userId: BOB,
    deviceId: "B1",
    since: "s00000000000000000001",
    upTo: "s00000000000000000002",
    fullState: false,
    filter: {},
    joinedRoomIds: [],
    now: 0,
  }, response);
  assertEquals(asked, [{
    userId: BOB,
    deviceId: "B1",
    since: "s00000000000000000001",
    upTo: "s00000000000000000002",
    limit: 100,
  }]);
  assertEquals(response.to_device.events, stored as unknown as JsonObject[]);
});

Deno.test("a request naming thousands of users looks their devices up a few at a time", async () => {
  const users = Array.from({ length: 2000 }, (_, i) => `@u${i}:example.org`);
  const t = await setup(Object.fromEntries(users.map((u) => [u, ["D"]])));
  let inFlight = 0;
  let peak = 0;
  const listDevices = t.directory.listDevices.bind(t.directory);
  t.directory.listDevices = async (userId: string) => {
    peak = Math.max(peak, ++inFlight);
    // Yield so that unbounded callers would all be in flight together.
    await new Promise((resolve) => setTimeout(resolve, 0));
    try {
      return await listDevices(userId);
    } finally {
      inFlight--;
    }
  };
  try {
    await t.service.send(request("many", Object.fromEntries(users.map((u) => [u, { "*": {} }]))));
    // Every user was resolved (and checked again after the commit), all delivered.
    assertEquals(t.listings.length, 2 * users.length);
    assertEquals((await t.inbox(users[1999], "D")).length, 1);
    assert(peak <= 32, `at most 32 look-ups at once, saw ${peak}`);
  } finally {
    t.kv.close();
  }
});
