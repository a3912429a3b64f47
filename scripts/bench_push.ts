/**
 * Push benchmark: the cost the notification planner adds to a send, for rooms of growing size
 * on `:memory:` KV, beside pure rule evaluation per recipient.
 * Run: deno run --allow-all scripts/bench_push.ts
 */
import { KvEventStore } from "../kv/kv_event_store.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { LocalEventSender } from "../domain/local_event_sender.ts";
import { signingKeyFromSeed } from "../domain/protocol/signing.ts";
import { KvNotificationStore } from "../kv/notification_store.ts";
import { KvPushRuleStore } from "../kv/push_rule_store.ts";
import { PushRuleService } from "../domain/push/push_rule_service.ts";
import { NotificationPlanner } from "../domain/push/notification_planner.ts";
import { evaluatePushRules } from "../domain/push/push_rule_evaluator.ts";
import { defaultRules } from "../domain/push/push_rules.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";

const SERVER = "bench.local";
const rules = defaultRules(`@u:${SERVER}`);
const event = {
  type: "m.room.message",
  sender: `@a:${SERVER}`,
  room_id: "!r:x",
  content: { msgtype: "m.text", body: "hello there", "m.mentions": { user_ids: [] } },
};
const n = 200_000;
let t = performance.now();
for (let i = 0; i < n; i++) {
  evaluatePushRules(rules, event, {
    userId: `@u:${SERVER}`,
    memberCount: 50,
    senderPowerLevel: 0,
    notificationPowerLevel: () => 50,
  });
}
console.log(
  `pure evaluation, default rules: ${
    ((performance.now() - t) * 1000 / n).toFixed(2)
  } µs per recipient`,
);

for (const members of [10, 100, 1000]) {
  const kv = await Deno.openKv(":memory:");
  const store = new KvEventStore(kv, { resolver: resolveState });
  const signingKey = await signingKeyFromSeed(new Uint8Array(32).fill(7), "ed25519:b");
  const notifications = new KvNotificationStore(kv);
  const pushRules = new PushRuleService(new KvPushRuleStore(kv));
  const planner = new NotificationPlanner({ store, notifications, pushRules, serverName: SERVER });
  const plain = new LocalEventSender({ store, serverName: SERVER, signingKey });
  const hooked = new LocalEventSender({
    store,
    serverName: SERVER,
    signingKey,
    eventHooks: [planner],
  });
  const creator = `@a:${SERVER}`;
  const { roomId } = await plain.createRoom({ version: "12", creator });
  await plain.send({
    roomId,
    sender: creator,
    type: "m.room.member",
    stateKey: creator,
    content: { membership: "join" },
  });
  await plain.send({
    roomId,
    sender: creator,
    type: "m.room.join_rules",
    stateKey: "",
    content: { join_rule: "public" },
  });
  for (let from = 0; from < members - 1; from += 16) {
    // Joins in small groups: a sender batch of many joins outgrows one commit's key budget.
    await Promise.all(Array.from({ length: Math.min(16, members - 1 - from) }, (_, k) => {
      const u = `@u${from + k}:${SERVER}`;
      return plain.send({
        roomId,
        sender: u,
        type: "m.room.member",
        stateKey: u,
        content: { membership: "join" },
      });
    }));
  }
  const version = roomVersion("12")!;
  const pdu = {
    type: "m.room.message",
    sender: creator,
    content: event.content,
    origin_server_ts: 1,
  } as never;
  await planner.prepare({ eventId: "$warm", roomId, pdu }, version); // fills the ruleset cache
  const rounds = 20;
  t = performance.now();
  for (let i = 0; i < rounds; i++) {
    await planner.prepare({ eventId: `$e${i}`, roomId, pdu }, version);
  }
  const prep = (performance.now() - t) / rounds;
  const send = async (sender: LocalEventSender) => {
    const start = performance.now();
    for (let i = 0; i < rounds; i++) {
      await sender.send({
        roomId,
        sender: creator,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `m${i}` },
      });
    }
    return (performance.now() - start) / rounds;
  };
  const base = await send(plain);
  const withHook = await send(hooked);
  // Concurrent sends fold into batches; hooks split them so no commit outgrows KV's limits.
  t = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      hooked.send({
        roomId,
        sender: creator,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `c${i}` },
      })),
  );
  const burst = (performance.now() - t) / 64;
  console.log(
    `${members} members: planner prepare ${prep.toFixed(2)} ms; sequential send ${
      base.toFixed(2)
    } ms plain vs ${withHook.toFixed(2)} ms with notifications; 64 concurrent sends ${
      burst.toFixed(2)
    } ms each`,
  );
  kv.close();
}
