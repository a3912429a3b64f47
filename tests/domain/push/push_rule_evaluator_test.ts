import { assert, assertEquals } from "../../assert.ts";
import {
  conditionMatches,
  evaluatePushRules,
  globMatches,
  memberCountMatches,
  parsePath,
  type PushContext,
  type PushEvent,
} from "../../../domain/push/push_rule_evaluator.ts";
import {
  defaultRules,
  effectiveRuleset,
  emptyUserPushRules,
} from "../../../domain/push/push_rules.ts";
import { changeRule, putRule } from "../../../domain/push/push_rule_edits.ts";

const BOB = "@bob:example.org";
const ctx = (over: Partial<PushContext> = {}): PushContext => ({
  userId: BOB,
  memberCount: 5,
  senderPowerLevel: 0,
  notificationPowerLevel: () => 50,
  ...over,
});
const message = (content: Record<string, unknown>, extra: Partial<PushEvent> = {}): PushEvent => ({
  type: "m.room.message",
  sender: "@alice:example.org",
  room_id: "!room:example.org",
  content: { msgtype: "m.text", body: "hello", ...content } as PushEvent["content"],
  ...extra,
});
const rules = defaultRules(BOB);

Deno.test("the default ruleset is the spec's v1.19 list, in order, with the legacy mention rules where v1.16 had them", () => {
  assertEquals(rules.override.map((r) => r.rule_id), [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.contains_display_name",
    ".m.rule.is_room_mention",
    ".m.rule.roomnotif",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
  ]);
  assertEquals(rules.underride.map((r) => r.rule_id), [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
  ]);
  assertEquals(rules.content, [{
    rule_id: ".m.rule.contains_user_name",
    default: true,
    enabled: true,
    pattern: "bob",
    actions: ["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }],
  }]);
  assert(rules.override.every((r) => r.default));
  assertEquals(rules.override[0].enabled, false);
});

Deno.test("plain group messages notify without highlight; 1:1 messages add a sound", () => {
  const group = evaluatePushRules(rules, message({}), ctx());
  assertEquals([group?.ruleId, group?.notify, group?.highlight], [".m.rule.message", true, false]);
  const dm = evaluatePushRules(rules, message({}), ctx({ memberCount: 2 }));
  assertEquals([dm?.ruleId, dm?.sound], [".m.rule.room_one_to_one", "default"]);
});

Deno.test("m.mentions.user_ids highlights; @room needs the sender's notification level", () => {
  const mention = evaluatePushRules(rules, message({ "m.mentions": { user_ids: [BOB] } }), ctx());
  assertEquals([mention?.ruleId, mention?.highlight], [".m.rule.is_user_mention", true]);
  const other = evaluatePushRules(rules, message({ "m.mentions": { user_ids: ["@x:y"] } }), ctx());
  assertEquals(other?.ruleId, ".m.rule.message");
  const room = message({ "m.mentions": { room: true } });
  assertEquals(evaluatePushRules(rules, room, ctx())?.ruleId, ".m.rule.message");
  const allowed = evaluatePushRules(rules, room, ctx({ senderPowerLevel: 50 }));
  assertEquals([allowed?.ruleId, allowed?.highlight], [".m.rule.is_room_mention", true]);
});

Deno.test("legacy mention rules: a body mention highlights only when the event has no m.mentions", () => {
  const byName = evaluatePushRules(rules, message({ body: "hi bob!" }), ctx());
  assertEquals([byName?.ruleId, byName?.kind, byName?.highlight, byName?.sound], [
    ".m.rule.contains_user_name",
    "content",
    true,
    "default",
  ]);
  assertEquals(evaluatePushRules(rules, message({ body: "hi bobby" }), ctx())?.highlight, false);
  const named = ctx({ displayName: "Robert Tables" });
  const byDisplayName = evaluatePushRules(rules, message({ body: "ask robert tables" }), named);
  assertEquals([byDisplayName?.ruleId, byDisplayName?.highlight], [
    ".m.rule.contains_display_name",
    true,
  ]);
  const atRoom = message({ body: "@room lunch" });
  assertEquals(evaluatePushRules(rules, atRoom, ctx())?.ruleId, ".m.rule.message");
  const allowed = evaluatePushRules(rules, atRoom, ctx({ senderPowerLevel: 50 }));
  assertEquals([allowed?.ruleId, allowed?.highlight], [".m.rule.roomnotif", true]);

  // With m.mentions (even empty) the sender said whom it mentions: the legacy rules are skipped.
  for (const mentions of [{}, { user_ids: [] }, { room: false }]) {
    const withMentions = { "m.mentions": mentions };
    for (const [body, c] of [["hi bob", ctx()], ["ask robert tables", named]] as const) {
      const d = evaluatePushRules(rules, message({ body, ...withMentions }), c);
      assertEquals([d?.ruleId, d?.highlight], [".m.rule.message", false]);
    }
    const d = evaluatePushRules(
      rules,
      message({ body: "@room lunch", ...withMentions }),
      ctx({ senderPowerLevel: 50 }),
    );
    assertEquals(d?.ruleId, ".m.rule.message");
  }
  // A user's own rule is never skipped, even when its pattern looks like a mention.
  const own = effectiveRuleset(
    BOB,
    putRule(emptyUserPushRules(), "content", "mine", { pattern: "bob", actions: ["notify"] }),
  );
  const d = evaluatePushRules(own, message({ body: "hi bob", "m.mentions": {} }), ctx());
  assertEquals(d?.ruleId, "mine");
});

Deno.test("legacy mention rules can be disabled; a muted room still hears a body mention", () => {
  const off = changeRule(
    BOB,
    emptyUserPushRules(),
    "content",
    ".m.rule.contains_user_name",
    { enabled: false },
  );
  const d = evaluatePushRules(effectiveRuleset(BOB, off), message({ body: "hi bob" }), ctx());
  assertEquals([d?.ruleId, d?.highlight], [".m.rule.message", false]);
  const room = "!room:example.org";
  const muted = effectiveRuleset(
    BOB,
    putRule(emptyUserPushRules(), "room", room, { actions: ["dont_notify"] }),
  );
  assertEquals(evaluatePushRules(muted, message({ body: "hello" }), ctx())?.notify, false);
  const mention = evaluatePushRules(muted, message({ body: "hello @bob:example.org" }), ctx());
  assertEquals([mention?.ruleId, mention?.notify], [".m.rule.contains_user_name", true]);
});

Deno.test("notices, edits, reactions and member events do not notify; invites for me do", () => {
  const none = (e: PushEvent) => evaluatePushRules(rules, e, ctx())?.notify ?? false;
  assertEquals(none(message({ msgtype: "m.notice" })), false);
  assertEquals(none(message({ "m.relates_to": { rel_type: "m.replace", event_id: "$x" } })), false);
  assertEquals(none({ ...message({}), type: "m.reaction" }), false);
  const member = (membership: string, state_key: string): PushEvent => ({
    type: "m.room.member",
    sender: "@alice:example.org",
    room_id: "!r:example.org",
    state_key,
    content: { membership },
  });
  assertEquals(none(member("join", "@carol:example.org")), false);
  const invite = evaluatePushRules(rules, member("invite", BOB), ctx());
  assertEquals([invite?.ruleId, invite?.notify], [".m.rule.invite_for_me", true]);
  const tombstone: PushEvent = { ...member("x", ""), type: "m.room.tombstone", content: {} };
  assertEquals(evaluatePushRules(rules, tombstone, ctx())?.highlight, true);
  // No implicit state_key condition: a tombstone-typed message event is not a tombstone.
  const fake: PushEvent = { ...message({}), type: "m.room.tombstone" };
  assertEquals(evaluatePushRules(rules, fake, ctx()), null);
  const encrypted: PushEvent = { ...message({}), type: "m.room.encrypted", content: {} };
  assertEquals(evaluatePushRules(rules, encrypted, ctx())?.ruleId, ".m.rule.encrypted");
  const call: PushEvent = { ...message({}), type: "m.call.invite" };
  assertEquals(evaluatePushRules(rules, call, ctx())?.sound, "ring");
});

Deno.test("the master rule, when enabled, silences everything, user rules included", () => {
  let user = putRule(emptyUserPushRules(), "override", "loud", {
    actions: ["notify", { set_tweak: "highlight" }],
    conditions: [],
  });
  user = changeRule(BOB, user, "override", ".m.rule.master", { enabled: true });
  const ruleset = effectiveRuleset(BOB, user);
  assertEquals(ruleset.override.slice(0, 2).map((r) => r.rule_id), [".m.rule.master", "loud"]);
  const decision = evaluatePushRules(ruleset, message({}), ctx());
  assertEquals([decision?.ruleId, decision?.notify], [".m.rule.master", false]);
});

Deno.test("content, room and sender rules beat underrides; disabled rules never match", () => {
  let user = putRule(emptyUserPushRules(), "content", "cake", {
    actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }],
    pattern: "cake*lie",
  });
  user = putRule(user, "room", "!room:example.org", { actions: [] });
  let ruleset = effectiveRuleset(BOB, user);
  assertEquals(
    evaluatePushRules(ruleset, message({ body: "The CAKE is a lie!" }), ctx())?.sound,
    "cakealarm.wav",
  );
  assertEquals(evaluatePushRules(ruleset, message({}), ctx())?.notify, false);
  user = changeRule(BOB, user, "room", "!room:example.org", { enabled: false });
  ruleset = effectiveRuleset(BOB, user);
  assertEquals(evaluatePushRules(ruleset, message({}), ctx())?.ruleId, ".m.rule.message");
  user = putRule(user, "sender", "@alice:example.org", { actions: ["dont_notify"] });
  const muted = evaluatePushRules(effectiveRuleset(BOB, user), message({}), ctx());
  // dont_notify is a historical no-op: equivalent to no actions.
  assertEquals([muted?.ruleId, muted?.notify, muted?.actions], ["@alice:example.org", false, []]);
});

Deno.test("event_match: whole value, case-insensitive globs; content.body by word boundary", () => {
  const topic = (value: unknown): PushEvent => ({
    type: "m.room.topic",
    sender: "@s:x",
    room_id: "!r:x",
    state_key: "",
    content: { topic: value } as PushEvent["content"],
  });
  const cond = { kind: "event_match", key: "content.topic", pattern: "lunc?*" };
  assert(conditionMatches(cond, topic("Lunch plans"), ctx()));
  assert(conditionMatches(cond, topic("LUNCH"), ctx()));
  assert(!conditionMatches(cond, topic(" lunch"), ctx()));
  assert(!conditionMatches(cond, topic("lunc"), ctx()));
  assert(!conditionMatches(cond, topic(null), ctx()));
  assert(
    !conditionMatches(
      { kind: "event_match", key: "content.nope", pattern: "*" },
      topic("x"),
      ctx(),
    ),
  );
  const body = { kind: "event_match", key: "content.body", pattern: "ex*ple" };
  assert(conditionMatches(body, message({ body: "An example event." }), ctx()));
  assert(conditionMatches(body, message({ body: "exple" }), ctx()));
  assert(conditionMatches(body, message({ body: "An exciting triple-whammy" }), ctx()));
  assert(!conditionMatches(body, message({ body: "examples" }), ctx()));
  assert(globMatches("a.b(c)", "A.B(C)", false));
  assert(!globMatches("a.b", "axb", false));
});

Deno.test("event_property_is and _contains match exact scalars only, on escaped paths", () => {
  assertEquals(parsePath("content.m\\.relates_to.rel_type"), [
    "content",
    "m.relates_to",
    "rel_type",
  ]);
  assertEquals(parsePath("content.m\\\\foo"), ["content", "m\\foo"]);
  assertEquals(parsePath("content.a\\xb"), ["content", "a\\xb"]);
  const create: PushEvent = {
    type: "m.room.create",
    sender: "@s:x",
    room_id: "!r:x",
    state_key: "",
    content: {
      "m.federate": true,
      alt_aliases: ["#somewhere:example.org", "#myroom:example.com", 1],
    },
  };
  const is = (value: unknown) =>
    conditionMatches(
      { kind: "event_property_is", key: "content.m\\.federate", value: value as boolean },
      create,
      ctx(),
    );
  assert(is(true));
  assert(!is("true"));
  assert(!is(1));
  const contains = (value: unknown) =>
    conditionMatches(
      { kind: "event_property_contains", key: "content.alt_aliases", value: value as string },
      create,
      ctx(),
    );
  assert(contains("#myroom:example.com"));
  assert(contains(1));
  assert(!contains(":example.com"));
  assert(
    !conditionMatches(
      { kind: "event_property_contains", key: "content.m\\.federate", value: true },
      create,
      ctx(),
    ),
  );
});

Deno.test("room_member_count, display names, sender permission and unknown conditions", () => {
  assert(memberCountMatches("2", 2));
  assert(memberCountMatches("==2", 2));
  assert(memberCountMatches("<10", 9) && !memberCountMatches("<10", 10));
  assert(memberCountMatches("<=10", 10) && memberCountMatches(">=3", 3));
  assert(memberCountMatches(">3", 4) && !memberCountMatches(">3", 3));
  assert(!memberCountMatches("~3", 3) && !memberCountMatches("", 0));
  const named = ctx({ displayName: "Bob*" });
  const dn = { kind: "contains_display_name" };
  assert(conditionMatches(dn, message({ body: "hey bob*, lunch?" }), named));
  assert(!conditionMatches(dn, message({ body: "hey bobby" }), named));
  assert(!conditionMatches(dn, message({ body: "hey bob" }), ctx()));
  const perm = { kind: "sender_notification_permission", key: "room" };
  assert(conditionMatches(perm, message({}), ctx({ senderPowerLevel: 50 })));
  assert(!conditionMatches(perm, message({}), ctx({ senderPowerLevel: 49 })));
  assert(!conditionMatches({ kind: "org.example.unknown" }, message({}), ctx()));
});
