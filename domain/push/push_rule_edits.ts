/**
 * Changing a user's push rules: pure functions from the stored changes to new ones, throwing
 * the Matrix error a client should see. Server-default rules can be enabled, disabled and given
 * new actions, never replaced or deleted.
 */
import { MatrixError, notFound } from "../errors.ts";
import {
  defaultRuleKey,
  defaultRules,
  type PushAction,
  type PushCondition,
  type PushRule,
  type RuleKind,
  type UserPushRules,
  type UserRule,
} from "./push_rules.ts";

/** A rule body as PUT /pushrules/global/{kind}/{ruleId} sends it. */
export interface RuleBody {
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

const ruleNotFound = () => notFound("The push rule was not found.");

/** The rule `ruleId` of `kind`, as the client sees it; 404 when there is none. */
export function findRule(
  userId: string,
  user: UserPushRules,
  kind: RuleKind,
  ruleId: string,
): PushRule {
  const own = user.rules[kind].find((r) => r.rule_id === ruleId);
  if (own) return { ...own, default: false };
  const builtIn = defaultRules(userId)[kind].find((r) => r.rule_id === ruleId);
  if (!builtIn) throw ruleNotFound();
  return { ...builtIn, ...user.defaults[defaultRuleKey(kind, ruleId)] };
}

/** Refuse rule IDs the spec reserves or forbids. */
export function checkUserRuleId(ruleId: string): void {
  if (ruleId.startsWith(".")) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Rule IDs starting with '.' are reserved");
  }
  if (ruleId.includes("/") || ruleId.includes("\\")) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Rule IDs may not contain '/' or '\\'");
  }
  if (ruleId === "") throw new MatrixError("M_INVALID_PARAM", 400, "Empty rule ID");
}

/**
 * Add or replace a user rule. A new rule is enabled and, without `before`/`after`, the most
 * important user rule of its kind; a replaced one keeps its enabled flag and place unless moved.
 */
export function putRule(
  user: UserPushRules,
  kind: RuleKind,
  ruleId: string,
  body: RuleBody,
  placement: { before?: string; after?: string } = {},
): UserPushRules {
  checkUserRuleId(ruleId);
  if (kind === "content" && body.pattern === undefined) {
    throw new MatrixError("M_MISSING_PARAM", 400, "Content rules need a 'pattern'");
  }
  const rules = [...user.rules[kind]];
  const index = rules.findIndex((r) => r.rule_id === ruleId);
  const existing = index >= 0 ? rules[index] : undefined;
  const next: UserRule = {
    rule_id: ruleId,
    enabled: existing?.enabled ?? true,
    actions: body.actions,
  };
  if (kind === "override" || kind === "underride") next.conditions = body.conditions ?? [];
  if (kind === "content") next.pattern = body.pattern;

  const anchorId = placement.before ?? placement.after;
  if (anchorId !== undefined) {
    if (index >= 0) rules.splice(index, 1);
    const anchor = rules.findIndex((r) => r.rule_id === anchorId);
    if (anchor < 0) {
      throw new MatrixError("M_UNKNOWN", 400, `before/after rule not found: ${anchorId}`);
    }
    rules.splice(placement.before !== undefined ? anchor : anchor + 1, 0, next);
  } else if (index >= 0) {
    rules[index] = next;
  } else {
    rules.unshift(next);
  }
  return { ...user, rules: { ...user.rules, [kind]: rules } };
}

/** Delete a user rule; server-default rules cannot be deleted. */
export function deleteRule(
  userId: string,
  user: UserPushRules,
  kind: RuleKind,
  ruleId: string,
): UserPushRules {
  const rules = user.rules[kind];
  if (!rules.some((r) => r.rule_id === ruleId)) {
    if (defaultRules(userId)[kind].some((r) => r.rule_id === ruleId)) {
      throw new MatrixError("M_INVALID_PARAM", 400, "Server-default rules cannot be deleted");
    }
    throw ruleNotFound();
  }
  return { ...user, rules: { ...user.rules, [kind]: rules.filter((r) => r.rule_id !== ruleId) } };
}

/** Set a rule's enabled flag or actions, on a user rule or a server-default one. */
export function changeRule(
  userId: string,
  user: UserPushRules,
  kind: RuleKind,
  ruleId: string,
  change: { enabled: boolean } | { actions: PushAction[] },
): UserPushRules {
  const rules = user.rules[kind];
  const index = rules.findIndex((r) => r.rule_id === ruleId);
  if (index >= 0) {
    const updated = [...rules];
    updated[index] = { ...rules[index], ...change };
    return { ...user, rules: { ...user.rules, [kind]: updated } };
  }
  if (!defaultRules(userId)[kind].some((r) => r.rule_id === ruleId)) throw ruleNotFound();
  const key = defaultRuleKey(kind, ruleId);
  return { ...user, defaults: { ...user.defaults, [key]: { ...user.defaults[key], ...change } } };
}
