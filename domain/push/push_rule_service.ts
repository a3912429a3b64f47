/**
 * Reading and changing users' push rules. Rulesets are cached per user because every event is
 * evaluated for every member of its room; an edit in this process drops the entry at once, and
 * entries expire after a short time so edits made by another isolate are seen soon after.
 */
import { MatrixError } from "../errors.ts";
import type { PushRuleStore } from "../ports/push_rule_store.ts";
import { effectiveRuleset, type Ruleset, type UserPushRules } from "./push_rules.ts";

/** How long a cached ruleset is trusted without rereading it. */
const CACHE_TTL_MS = 10_000;
/** Users whose rulesets are kept. */
const CACHE_USERS = 10_000;
const EDIT_ATTEMPTS = 8;

/** Push rule reads and edits over the store. */
export class PushRuleService {
  readonly #cache = new Map<string, { ruleset: Ruleset; at: number }>();
  readonly #listeners: ((userId: string) => void)[] = [];

  /** A service over `store`; `now` is injectable for tests. */
  constructor(
    private readonly store: PushRuleStore,
    private readonly now: () => number = Date.now,
  ) {}

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
    const { rules } = await this.store.get(userId);
    const ruleset = effectiveRuleset(userId, rules);
    this.#remember(userId, ruleset);
    return ruleset;
  }

  /** Rulesets for many users at once (evaluation), from the cache where it is fresh. */
  async rulesetsFor(userIds: readonly string[]): Promise<Map<string, Ruleset>> {
    const out = new Map<string, Ruleset>();
    const missing: string[] = [];
    const now = this.now();
    for (const userId of userIds) {
      const cached = this.#cache.get(userId);
      if (cached && now - cached.at < CACHE_TTL_MS) out.set(userId, cached.ruleset);
      else missing.push(userId);
    }
    if (missing.length > 0) {
      const stored = await this.store.getMany(missing);
      for (const userId of missing) {
        const ruleset = effectiveRuleset(userId, stored.get(userId)!.rules);
        this.#remember(userId, ruleset);
        out.set(userId, ruleset);
      }
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
        this.#cache.delete(userId);
        for (const listener of this.#listeners) listener(userId);
        return;
      }
    }
    throw new MatrixError("M_UNKNOWN", 409, "Push rules changed concurrently; try again");
  }

  #remember(userId: string, ruleset: Ruleset): void {
    this.#cache.delete(userId);
    this.#cache.set(userId, { ruleset, at: this.now() });
    if (this.#cache.size > CACHE_USERS) this.#cache.delete(this.#cache.keys().next().value!);
  }
}
