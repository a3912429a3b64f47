/**
 * The notification planner on the real send path: notifications and their GET /notifications
 * index ride in the event's own commit, overflow beyond one commit's budget follows it, and the
 * room's members are read again only when its head has moved.
 */
import { assert, assertEquals } from "../../assert.ts";
import { LocalEventSender } from "../../../domain/local_event_sender.ts";
import {
  NotificationPlanner,
  RECIPIENTS_PER_COMMIT,
} from "../../../domain/push/notification_planner.ts";
import { PushRuleService } from "../../../domain/push/push_rule_service.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";
import { signingKeyFromSeed } from "../../../domain/protocol/signing.ts";
import { resolveState } from "../../../domain/protocol/state_res/resolve_state.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import { KvEventStore } from "../../../kv/kv_event_store.ts";
import { KvNotificationStore } from "../../../kv/notification_store.ts";
import { KvPushRuleStore } from "../../../kv/push_rule_store.ts";
import { PusherService } from "../../../domain/push/pusher_service.ts";
import { PUSH_STREAM } from "../../../domain/push/push_delivery.ts";
import { KvPusherStore } from "../../../kv/pusher_store.ts";
import { KvOutboxStore } from "../../../kv/outbox_store.ts";

const SERVER = "t.local";
const CREATOR = `@a:${SERVER}`;

/** A room of `size` joined members (user IDs from `name`) with a planner-hooked sender. */
async function room(size: number, name = (i: number) => `@u${i}:${SERVER}`, withPush = false) {
  const kv = await Deno.openKv(":memory:");
  let commits = 0;
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const op = atomic();
    const commit = op.commit.bind(op);
    op.commit = () => {
      commits++;
      return commit();
    };
    return op;
  };
  const store = new KvEventStore(kv, { resolver: resolveState });
  let memberReads = 0;
  const members = store.members.bind(store);
  store.members = (...args) => {
    memberReads++;
    return members(...args);
  };
  const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(3), "ed25519:t");
  const notifications = new KvNotificationStore(kv);
  const pushRules = new PushRuleService(new KvPushRuleStore(kv));
  const pushers = new PusherService({ store: new KvPusherStore(kv) });
  const outbox = new KvOutboxStore(kv, PUSH_STREAM);
  let wakes = 0;
  const planner = new NotificationPlanner({
    store,
    notifications,
    pushRules,
    serverName: SERVER,
    push: withPush
      ? { pushersOf: (ids) => pushers.forUsers(ids), outbox, wake: () => wakes++ }
      : undefined,
  });
  const plain = new LocalEventSender({ store, serverName: SERVER, signingKey });
  const hooked = new LocalEventSender({
    store,
    serverName: SERVER,
    signingKey,
    eventHooks: [planner],
  });
  const { roomId } = await plain.createRoom({ version: "12", creator: CREATOR });
  const join = (u: string) =>
    plain.send({
      roomId,
      sender: u,
      type: "m.room.member",
      stateKey: u,
      content: { membership: "join" },
    });
  await join(CREATOR);
  await plain.send({
    roomId,
    sender: CREATOR,
    type: "m.room.join_rules",
    stateKey: "",
    content: { join_rule: "public" },
  });
  for (let from = 0; from < size - 1; from += 16) {
    await Promise.all(
      Array.from({ length: Math.min(16, size - 1 - from) }, (_, k) => join(name(from + k))),
    );
  }
  const say = (body: string) =>
    hooked.send({
      roomId,
      sender: CREATOR,
      type: "m.room.message",
      content: { msgtype: "m.text", body },
    });
  return {
    kv,
    roomId,
    planner,
    notifications,
    say,
    join,
    commits: () => commits,
    memberReads: () => memberReads,
    pushers,
    outbox,
    wakes: () => wakes,
  };
}

const message = {
  type: "m.room.message",
  sender: CREATOR,
  content: { msgtype: "m.text", body: "hi" },
  origin_server_ts: 1,
} as unknown as Pdu;

Deno.test("notifications: a send into a shared room is one commit, its /notifications index included", async () => {
  const r = await room(3);
  try {
    const before = r.commits();
    const sent = await r.say("hello");
    assertEquals(r.commits() - before, 1, "event, counts and index in one commit");
    const page = await r.notifications.page(`@u0:${SERVER}`, { limit: 10, onlyHighlight: false });
    assertEquals(page.entries.map((e) => e.eventId), [sent.eventId]);
    const counts = await r.notifications.after(`@u1:${SERVER}`, r.roomId, 0, 10);
    assertEquals(counts.map((e) => e.eventId), [sent.eventId]);
  } finally {
    r.kv.close();
  }
});

Deno.test("notifications: beyond one commit's recipients, the rest follow the commit and all are indexed", async () => {
  const size = RECIPIENTS_PER_COMMIT + 40;
  const r = await room(size);
  try {
    const version = roomVersion("12")!;
    const prepared =
      (await r.planner.prepare({ eventId: "$x", roomId: r.roomId, pdu: message }, version))!;
    assertEquals(prepared.weight, 2 * RECIPIENTS_PER_COMMIT + 1);
    assert(prepared.afterCommit !== undefined);

    const sent = await r.say("to everyone");
    for (const i of [0, size - 2]) {
      const user = `@u${i}:${SERVER}`;
      const page = await r.notifications.page(user, { limit: 10, onlyHighlight: false });
      assertEquals(page.entries.map((e) => e.eventId), [sent.eventId], user);
      const counts = await r.notifications.after(user, r.roomId, 0, 10);
      assertEquals(counts.map((e) => e.eventId), [sent.eventId], user);
    }
  } finally {
    r.kv.close();
  }
});

Deno.test("notifications: long user IDs keep fewer recipients in the event's commit", async () => {
  const long = (i: number) => `@${"x".repeat(200)}${i}:${SERVER}`;
  const r = await room(120, long);
  try {
    const version = roomVersion("12")!;
    const prepared =
      (await r.planner.prepare({ eventId: "$x", roomId: r.roomId, pdu: message }, version))!;
    const inCommit = (prepared.weight! - 1) / 2;
    assert(inCommit < 119 && inCommit > 50, `${inCommit} recipients in the commit`);
    assert(prepared.afterCommit !== undefined);
    const sent = await r.say("long names");
    const page = await r.notifications.page(long(118), { limit: 10, onlyHighlight: false });
    assertEquals(page.entries.map((e) => e.eventId), [sent.eventId]);
  } finally {
    r.kv.close();
  }
});

Deno.test("notifications: members are read again only after the room's state changes", async () => {
  const r = await room(5);
  try {
    const version = roomVersion("12")!;
    const prepare = () =>
      r.planner.prepare({ eventId: "$x", roomId: r.roomId, pdu: message }, version);
    const before = r.memberReads();
    await prepare();
    await prepare();
    assertEquals(r.memberReads() - before, 1);
    // A message moves the head but not the state: the cached audience still serves.
    await r.say("moves the head");
    const afterMessage = r.memberReads();
    await prepare();
    assertEquals(r.memberReads() - afterMessage, 0);
    // A join changes the state: the members are read again, and the newcomer is notified.
    await r.join(`@late:${SERVER}`);
    const afterJoin = r.memberReads();
    const prepared = await r.planner.notificationsFor(
      { eventId: "$y", roomId: r.roomId, pdu: message },
      version,
    );
    assertEquals(r.memberReads() - afterJoin, 1);
    assertEquals(prepared.some((n) => n.userId === `@late:${SERVER}`), true);
  } finally {
    r.kv.close();
  }
});

const pusher = (pushkey: string) => ({
  kind: "http",
  app_id: "app",
  pushkey,
  app_display_name: "App",
  device_display_name: "Phone",
  lang: "en",
  data: { url: "https://push.example.org/_matrix/push/v1/notify" },
});

Deno.test("push outbox: pushes ride in the event's commit, one stream per pusher", async () => {
  const r = await room(3, undefined, true);
  try {
    await r.pushers.set(`@u0:${SERVER}`, "DEV", pusher("a"));
    await r.pushers.set(`@u0:${SERVER}`, "DEV", pusher("b"));
    const [a, b] = await r.pushers.list(`@u0:${SERVER}`);
    const before = r.commits();
    const sent = await r.say("hello");
    assertEquals(r.commits() - before, 1, "event, notifications and pushes in one commit");
    for (const p of [a, b]) {
      const [entry] = await r.outbox.peek(p.id, 10);
      assertEquals(entry.payload.event_id, sent.eventId);
      assertEquals(entry.payload.user_id, `@u0:${SERVER}`);
    }
    assertEquals((await r.outbox.pending(10)).length, 2);
    assertEquals(r.wakes(), 1);
  } finally {
    r.kv.close();
  }
});

Deno.test("push outbox: recipients with pushers share the commit's mutation budget", async () => {
  const size = 200;
  const r = await room(size, undefined, true);
  try {
    for (let i = 0; i < size - 1; i++) {
      for (const key of ["a", "b", "c"]) {
        await r.pushers.set(`@u${i}:${SERVER}`, "D", pusher(`${key}${i}`));
      }
    }
    const version = roomVersion("12")!;
    const prepared =
      (await r.planner.prepare({ eventId: "$x", roomId: r.roomId, pdu: message }, version))!;
    // Each in-commit recipient costs 2 writes for its notification and 2 per pusher.
    assert(prepared.weight! <= 2 * RECIPIENTS_PER_COMMIT + 1, `weight ${prepared.weight}`);
    assert(prepared.afterCommit !== undefined);
    const sent = await r.say("to everyone");
    for (const i of [0, size - 2]) {
      const [first] = await r.pushers.list(`@u${i}:${SERVER}`);
      const [entry] = await r.outbox.peek(first.id, 10);
      assertEquals(entry.payload.event_id, sent.eventId, `@u${i}`);
    }
  } finally {
    r.kv.close();
  }
});
