/**
 * The storage port for push rules: one record per user holding only what the user changed
 * (their own rules, and enabled flags or actions set on server-default rules).
 */
import type { UserPushRules } from "../push/push_rules.ts";

/** A user's stored changes and the versionstamp of the commit that wrote them (null: none). */
export interface StoredPushRules {
  rules: UserPushRules;
  versionstamp: string | null;
}

/** Push rule storage. */
export interface PushRuleStore {
  /** The user's changes (empty when they never changed anything). */
  get(userId: string): Promise<StoredPushRules>;
  /** Several users' changes at once, for evaluating an event for a room's members. */
  getMany(userIds: readonly string[]): Promise<Map<string, StoredPushRules>>;
  /**
   * The versionstamp of the newest edit of anyone's rules (null: none yet). Every `put` moves
   * it in its own commit, so rulesets derived from records read after it was read stand while
   * it stands: one read checks the rules of a whole room.
   */
  version(): Promise<string | null>;
  /**
   * Write the user's changes unless someone else wrote since `expected` was read (and move
   * `version`); returns the new versionstamp, or null on a conflict (the caller rereads and
   * retries).
   */
  put(userId: string, rules: UserPushRules, expected: string | null): Promise<string | null>;
  /** Whether the user's rules were written in (since, upTo] of sync tokens (any time if no since). */
  changedBetween(userId: string, since: string | undefined, upTo: string): Promise<boolean>;
}
