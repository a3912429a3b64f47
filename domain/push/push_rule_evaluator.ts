/**
 * Push rule evaluation, pure: which rule of a user's ruleset matches an event first, and what
 * its actions mean (notify, highlight, sound). Patterns and key paths are compiled once and
 * cached, since one event is evaluated for every member of its room.
 */
import type { JsonValue } from "../protocol/json.ts";
import {
  LEGACY_MENTION_RULES,
  type PushAction,
  type PushCondition,
  type PushRule,
  RULE_KINDS,
  type Ruleset,
} from "./push_rules.ts";

/** The event as push rules see it: top-level fields and content. */
export interface PushEvent {
  type: string;
  sender: string;
  room_id: string;
  content: { [key: string]: JsonValue };
  state_key?: string;
  event_id?: string;
  [other: string]: JsonValue | undefined;
}

/** What conditions need beyond the event, for one recipient. */
export interface PushContext {
  /** The recipient's user ID. */
  userId: string;
  /** The room's joined member count. */
  memberCount: number;
  /** The recipient's display name in the room, for the deprecated contains_display_name. */
  displayName?: string;
  /** The sender's power level in the room. */
  senderPowerLevel: number;
  /** The level a `notifications` key (such as `room`) requires. */
  notificationPowerLevel(key: string): number;
}

/** The outcome for one recipient: the matched rule's actions, decoded. */
export interface PushDecision {
  ruleId: string;
  kind: string;
  /** The actions without the historical no-ops `dont_notify` and `coalesce`. */
  actions: PushAction[];
  notify: boolean;
  highlight: boolean;
  sound?: string;
}

/**
 * The first enabled rule that matches, and what it asks; null when none matches. The legacy
 * body-mention rules are skipped for an event whose content has `m.mentions` (MSC3952, as
 * Synapse does): its sender said whom it mentions.
 */
export function evaluatePushRules(
  ruleset: Ruleset,
  event: PushEvent,
  ctx: PushContext,
): PushDecision | null {
  const hasMentions = hasMentionsProperty(event);
  for (const kind of RULE_KINDS) {
    for (const rule of ruleset[kind]) {
      if (!rule.enabled) continue;
      if (hasMentions && isLegacyMentionRule(kind, rule)) continue;
      if (ruleMatches(kind, rule, event, ctx)) return decide(kind, rule);
    }
  }
  return null;
}

/** Whether the event's content has `m.mentions` (of any value), which turns off the legacy rules. */
export function hasMentionsProperty(event: Pick<PushEvent, "content">): boolean {
  return Object.hasOwn(event.content, "m.mentions");
}

function isLegacyMentionRule(kind: string, rule: PushRule): boolean {
  return rule.default && LEGACY_MENTION_RULES.has(`${kind}/${rule.rule_id}`);
}

/** Decode a rule's actions. A highlight tweak without a value means true. */
export function decodeActions(
  actions: readonly PushAction[],
): Omit<PushDecision, "ruleId" | "kind"> {
  const kept = actions.filter((a) => a !== "dont_notify" && a !== "coalesce");
  let notify = false;
  let highlight = false;
  let sound: string | undefined;
  for (const action of kept) {
    if (action === "notify") notify = true;
    else if (typeof action === "object" && action !== null) {
      if (action.set_tweak === "highlight") {
        highlight = action.value === undefined || action.value === true;
      } else if (action.set_tweak === "sound" && typeof action.value === "string") {
        sound = action.value;
      }
    }
  }
  return { actions: kept, notify, highlight, ...(sound !== undefined ? { sound } : {}) };
}

function decide(kind: string, rule: PushRule): PushDecision {
  return { ruleId: rule.rule_id, kind, ...decodeActions(rule.actions) };
}

function ruleMatches(kind: string, rule: PushRule, event: PushEvent, ctx: PushContext): boolean {
  switch (kind) {
    case "content":
      return typeof rule.pattern === "string" &&
        globMatches(rule.pattern, valueAt(event, ["content", "body"]), true);
    case "room":
      return rule.rule_id === event.room_id;
    case "sender":
      return rule.rule_id === event.sender;
    default:
      return (rule.conditions ?? []).every((c) => conditionMatches(c, event, ctx));
  }
}

/** Whether one condition holds; unknown or malformed conditions never match. */
export function conditionMatches(c: PushCondition, event: PushEvent, ctx: PushContext): boolean {
  switch (c.kind) {
    case "event_match": {
      if (typeof c.key !== "string" || typeof c.pattern !== "string") return false;
      const path = parsePath(c.key);
      const isBody = path.length === 2 && path[0] === "content" && path[1] === "body";
      return globMatches(c.pattern, valueAt(event, path), isBody);
    }
    case "event_property_is": {
      if (typeof c.key !== "string" || !isScalar(c.value)) return false;
      const value = valueAt(event, parsePath(c.key));
      return isScalar(value) && value === c.value;
    }
    case "event_property_contains": {
      if (typeof c.key !== "string" || !isScalar(c.value)) return false;
      const value = valueAt(event, parsePath(c.key));
      return Array.isArray(value) && value.some((v) => isScalar(v) && v === c.value);
    }
    case "contains_display_name": {
      const name = ctx.displayName;
      if (!name) return false;
      return literalWordMatches(name, valueAt(event, ["content", "body"]));
    }
    case "room_member_count":
      return typeof c.is === "string" && memberCountMatches(c.is, ctx.memberCount);
    case "sender_notification_permission":
      return typeof c.key === "string" &&
        ctx.senderPowerLevel >= ctx.notificationPowerLevel(c.key);
    default:
      return false;
  }
}

/** `is` of room_member_count: an integer with an optional ==, <, >, <= or >= prefix. */
export function memberCountMatches(is: string, count: number): boolean {
  const m = /^(==|<=|>=|<|>)?([0-9]+)$/.exec(is);
  if (!m) return false;
  const n = Number(m[2]);
  switch (m[1]) {
    case "<":
      return count < n;
    case ">":
      return count > n;
    case "<=":
      return count <= n;
    case ">=":
      return count >= n;
    default:
      return count === n;
  }
}

/** Non-compound canonical JSON values: strings, safe integers, booleans and null. */
function isScalar(value: unknown): value is string | number | boolean | null {
  return value === null || typeof value === "string" || typeof value === "boolean" ||
    (typeof value === "number" && Number.isSafeInteger(value));
}

const pathCache = new Map<string, string[]>();

/** Split a dot-separated property path; `\.` is a literal dot and `\\` a literal backslash. */
export function parsePath(key: string): string[] {
  const cached = pathCache.get(key);
  if (cached) return cached;
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < key.length; i++) {
    const ch = key[i];
    if (ch === "\\" && (key[i + 1] === "." || key[i + 1] === "\\")) {
      current += key[++i];
    } else if (ch === ".") {
      parts.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  parts.push(current);
  if (pathCache.size > 4096) pathCache.clear();
  pathCache.set(key, parts);
  return parts;
}

function valueAt(event: PushEvent, path: readonly string[]): unknown {
  let value: unknown = event;
  for (const part of path) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
    if (!Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

const globCache = new Map<string, RegExp>();

/**
 * Glob match (`*` any run, `?` one character), case-insensitive, on the whole value; for
 * `content.body`, on any substring bounded by word boundaries (anything but [A-Za-z0-9_]).
 * Non-string values never match.
 */
export function globMatches(pattern: string, value: unknown, wordBoundary: boolean): boolean {
  if (typeof value !== "string") return false;
  const cacheKey = (wordBoundary ? "w" : "e") + pattern;
  let regex = globCache.get(cacheKey);
  if (!regex) {
    const body = [...pattern].map((ch) =>
      ch === "*" ? "[\\s\\S]*" : ch === "?" ? "[\\s\\S]" : escapeRegExp(ch)
    ).join("");
    const source = wordBoundary ? `(?:^|[^A-Za-z0-9_])${body}(?:[^A-Za-z0-9_]|$)` : `^${body}$`;
    regex = new RegExp(source, "iu");
    if (globCache.size > 4096) globCache.clear();
    globCache.set(cacheKey, regex);
  }
  return regex.test(value);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A display name is matched literally (its `*` and `?` are not wildcards), between word boundaries. */
function literalWordMatches(text: string, value: unknown): boolean {
  if (typeof value !== "string") return false;
  const source = `(?:^|[^A-Za-z0-9_])${escapeRegExp(text)}(?:[^A-Za-z0-9_]|$)`;
  return new RegExp(source, "iu").test(value);
}
