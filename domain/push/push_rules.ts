/**
 * Push rules as the spec shapes them (v1.19), the server-default rules, and a user's ruleset:
 * the defaults merged with the user's own rules and their changes to default rules.
 */
import type { JsonObject, JsonValue } from "../protocol/json.ts";

/** The five kinds of rule, in the order they are tried. */
export const RULE_KINDS = ["override", "content", "room", "sender", "underride"] as const;

/** One kind of push rule. */
export type RuleKind = typeof RULE_KINDS[number];

/** An action: "notify", a tweak object, or something unknown that is kept but ignored. */
export type PushAction = string | JsonObject;

/** A rule condition; unknown kinds are kept (and never match). */
export interface PushCondition {
  kind: string;
  key?: string;
  pattern?: string;
  is?: string;
  value?: JsonValue;
  [extra: string]: JsonValue | undefined;
}

/** One push rule as clients see it. */
export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

/** The `global` ruleset: rules of each kind, most important first. */
export type Ruleset = Record<RuleKind, PushRule[]>;

/** A user's own rule as stored: everything but `default` (always false for these). */
export interface UserRule {
  rule_id: string;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

/**
 * What a user has changed: their own rules per kind (most important first) and the enabled
 * flag or actions they set on server-default rules, keyed by `kind/rule_id`.
 */
export interface UserPushRules {
  rules: Record<RuleKind, UserRule[]>;
  defaults: Record<string, { enabled?: boolean; actions?: PushAction[] }>;
}

/** A user with no changes. */
export function emptyUserPushRules(): UserPushRules {
  return {
    rules: { override: [], content: [], room: [], sender: [], underride: [] },
    defaults: {},
  };
}

const sound = (value: string): JsonObject => ({ set_tweak: "sound", value });
const HIGHLIGHT: JsonObject = { set_tweak: "highlight" };
const match = (key: string, pattern: string): PushCondition => ({
  kind: "event_match",
  key,
  pattern,
});

/** A server-default rule (enabled unless said otherwise). */
function rule(
  rule_id: string,
  conditions: PushCondition[],
  actions: PushAction[],
  enabled = true,
): PushRule {
  return { rule_id, default: true, enabled, conditions, actions };
}

/**
 * The legacy body-mention rules (`kind/rule_id`): the spec removed them in v1.17, but they are
 * kept, as Synapse keeps them, for clients that don't send `m.mentions` (a plain-text mention
 * of a user's name still notifies). As MSC3952 says, they never apply to an event whose content
 * has `m.mentions`: the evaluator skips them there.
 */
export const LEGACY_MENTION_RULES: ReadonlySet<string> = new Set([
  "override/.m.rule.contains_display_name",
  "override/.m.rule.roomnotif",
  "content/.m.rule.contains_user_name",
]);

/**
 * The server-default override rules for `userId`: the spec's v1.19 list with the legacy
 * mention rules where v1.16 had them. `.m.rule.master` is listed first and always wins over
 * user rules.
 */
function defaultOverrides(userId: string): PushRule[] {
  return [
    rule(".m.rule.master", [], [], false),
    rule(".m.rule.suppress_notices", [match("content.msgtype", "m.notice")], []),
    rule(
      ".m.rule.invite_for_me",
      [
        match("type", "m.room.member"),
        match("content.membership", "invite"),
        match("state_key", userId),
      ],
      ["notify", sound("default")],
    ),
    rule(".m.rule.member_event", [match("type", "m.room.member")], []),
    rule(
      ".m.rule.is_user_mention",
      [{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: userId }],
      ["notify", sound("default"), HIGHLIGHT],
    ),
    // Legacy, kept for clients that don't send m.mentions (see LEGACY_MENTION_RULES).
    rule(
      ".m.rule.contains_display_name",
      [{ kind: "contains_display_name" }],
      ["notify", sound("default"), HIGHLIGHT],
    ),
    rule(
      ".m.rule.is_room_mention",
      [
        { kind: "event_property_is", key: "content.m\\.mentions.room", value: true },
        { kind: "sender_notification_permission", key: "room" },
      ],
      ["notify", HIGHLIGHT],
    ),
    // Legacy, kept for clients that don't send m.mentions (see LEGACY_MENTION_RULES).
    rule(
      ".m.rule.roomnotif",
      [match("content.body", "@room"), { kind: "sender_notification_permission", key: "room" }],
      ["notify", HIGHLIGHT],
    ),
    rule(
      ".m.rule.tombstone",
      [match("type", "m.room.tombstone"), match("state_key", "")],
      ["notify", HIGHLIGHT],
    ),
    rule(".m.rule.reaction", [match("type", "m.reaction")], []),
    rule(
      ".m.rule.room.server_acl",
      [match("type", "m.room.server_acl"), match("state_key", "")],
      [],
    ),
    rule(
      ".m.rule.suppress_edits",
      [{ kind: "event_property_is", key: "content.m\\.relates_to.rel_type", value: "m.replace" }],
      [],
    ),
  ];
}

/** The spec's server-default underride rules. */
function defaultUnderrides(): PushRule[] {
  const oneToOne: PushCondition = { kind: "room_member_count", is: "2" };
  return [
    rule(".m.rule.call", [match("type", "m.call.invite")], ["notify", sound("ring")]),
    rule(
      ".m.rule.encrypted_room_one_to_one",
      [oneToOne, match("type", "m.room.encrypted")],
      ["notify", sound("default")],
    ),
    rule(
      ".m.rule.room_one_to_one",
      [oneToOne, match("type", "m.room.message")],
      ["notify", sound("default")],
    ),
    rule(".m.rule.message", [match("type", "m.room.message")], ["notify"]),
    rule(".m.rule.encrypted", [match("type", "m.room.encrypted")], ["notify"]),
  ];
}

/**
 * The server-default content rules: only the legacy `.m.rule.contains_user_name` (see
 * LEGACY_MENTION_RULES), matching the user's localpart in the body.
 */
function defaultContent(userId: string): PushRule[] {
  const colon = userId.indexOf(":");
  const localpart = userId.slice(1, colon < 0 ? undefined : colon);
  return [{
    rule_id: ".m.rule.contains_user_name",
    default: true,
    enabled: true,
    pattern: localpart,
    actions: ["notify", sound("default"), HIGHLIGHT],
  }];
}

/** The server-default rules of each kind for `userId` (room and sender have none). */
export function defaultRules(userId: string): Ruleset {
  return {
    override: defaultOverrides(userId),
    content: defaultContent(userId),
    room: [],
    sender: [],
    underride: defaultUnderrides(),
  };
}

/** Key of a default rule's user changes in `UserPushRules.defaults`. */
export function defaultRuleKey(kind: RuleKind, ruleId: string): string {
  return `${kind}/${ruleId}`;
}

/**
 * The user's whole ruleset in priority order: `.m.rule.master`, then per kind the user's rules
 * before the server defaults (with the user's enabled/actions changes applied).
 */
export function effectiveRuleset(userId: string, user: UserPushRules): Ruleset {
  const defaults = defaultRules(userId);
  const out = {} as Ruleset;
  for (const kind of RULE_KINDS) {
    const applied = defaults[kind].map((r) => {
      const change = user.defaults[defaultRuleKey(kind, r.rule_id)];
      return change ? { ...r, ...change } : r;
    });
    const own: PushRule[] = user.rules[kind].map((r) => ({ ...r, default: false }));
    if (kind === "override") {
      const master = applied.filter((r) => r.rule_id === ".m.rule.master");
      out[kind] = [...master, ...own, ...applied.filter((r) => r.rule_id !== ".m.rule.master")];
    } else {
      out[kind] = [...own, ...applied];
    }
  }
  return out;
}

/** The ruleset as the `m.push_rules` account data event's content and GET /pushrules/ show it. */
export function pushRulesContent(ruleset: Ruleset): { global: Ruleset } {
  return { global: ruleset };
}
