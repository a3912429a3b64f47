/**
 * Reading and changing users' push rules. Every event is evaluated for every local member of
 * its room, so the effective rulesets (server defaults merged with each user's changes) are kept
 * in memory, but only under the store's version: the versionstamp of the newest edit of anyone's
 * rules, moved by every edit's own commit (in any process, or isolate on one KV). An evaluation
 * reads the version first (one KV read), drops everything when it moved, and reads the records
 * of only the users it does not hold. An edit committed anywhere therefore binds the very next
 * event everywhere; a ruleset read after the version was read is kept under it (newer data under
 * an older version is discarded at the next check; older data under a newer one cannot happen).
 */
import { MatrixError } from "../errors.ts";
import type { PushRuleStore } from "../ports/push_rule_store.ts";
import { effectiveRuleset, type Ruleset, type UserPushRules } from "./push_rules.ts";

/** Users whose derived rulesets are kept. */
const CACHE_USERS = 10_000;
const EDIT_ATTEMPTS = 8;

/** Push rule reads and edits over the store. */
export class PushRuleService {
  /** Rulesets by user, all read after the store's version was `#version`. */
  readonly #derived = new Map<string, Ruleset>();
  /** The store version `#derived` stands on (undefined: never read). */
  #version: string | null | undefined;
  readonly #listeners: ((userId: string) => void)[] = [];

  /** A service over `store`. */
  constructor(private readonly store: PushRuleStore) {}

  /** Be told after a user's rules change (wakes their long-polling syncs). */
  onChange(listener: (userId: string) => void): void {
    this.#listeners.push(listener);
  }

  /** The user's stored changes (for edits and single-rule reads). */
  async userRules(userId: string): Promise<UserPushRules> {
    return (await this.store.get(userId)).rules;
  }

  /** The user's full ruleset, as GET /pushrules/ and the `m.push_rules` account data show it. */
  async ruleset(userId: string): Promise<Ruleset> {
    return effectiveRuleset(userId, (await this.store.get(userId)).rules);
  }

  /** Rulesets for many users at once (evaluation), each as it stands in the store now. */
  async rulesetsFor(userIds: readonly string[]): Promise<Map<string, Ruleset>> {
    const version = await this.store.version();
    if (isNewer(version, this.#version)) {
      this.#derived.clear();
      this.#version = version;
    }
    const out = new Map<string, Ruleset>();
    const missing: string[] = [];
    // A call that read an older version than another call meanwhile saw trusts nothing held.
    const current = version === this.#version;
    for (const userId of userIds) {
      const held = current ? this.#derived.get(userId) : undefined;
      if (held !== undefined) out.set(userId, held);
      else missing.push(userId);
    }
    if (missing.length === 0) return out;
    const stored = await this.store.getMany(missing);
    for (const userId of missing) {
      const ruleset = effectiveRuleset(userId, stored.get(userId)!.rules);
      out.set(userId, ruleset);
      // Read after `version` was: kept only if the memory still stands on that version.
      if (version === this.#version) this.#remember(userId, ruleset);
    }
    return out;
  }

  /** Apply `change` to the user's rules, retrying when another edit lands first. */
  async edit(userId: string, change: (rules: UserPushRules) => UserPushRules): Promise<void> {
    for (let attempt = 0; attempt < EDIT_ATTEMPTS; attempt++) {
      const stored = await this.store.get(userId);
      const next = change(stored.rules);
      const written = await this.store.put(userId, next, stored.versionstamp);
      if (written !== null) {
        for (const listener of this.#listeners) listener(userId);
        return;
      }
    }
    throw new MatrixError("M_UNKNOWN", 409, "Push rules changed concurrently; try again");
  }

  #remember(userId: string, ruleset: Ruleset): void {
    this.#derived.delete(userId);
    this.#derived.set(userId, ruleset);
    if (this.#derived.size > CACHE_USERS) this.#derived.delete(this.#derived.keys().next().value!);
  }
}

/** Whether store version `a` is later than `b` (versionstamps grow; null is before any edit). */
function isNewer(a: string | null, b: string | null | undefined): boolean {
  if (b === undefined) return true;
  if (a === null) return false;
  return b === null || a > b;
}
