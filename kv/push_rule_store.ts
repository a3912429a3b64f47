/**
 * Push rules in KV: one record per user (`userid_pushrules`) holding only the user's changes as
 * UTF-8 JSON bytes, written with a versionstamp check so concurrent edits never lose one.
 */
import { tooLarge } from "../domain/errors.ts";
import type { PushRuleStore, StoredPushRules } from "../domain/ports/push_rule_store.ts";
import { emptyUserPushRules, type UserPushRules } from "../domain/push/push_rules.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { getManyChunked } from "./get_many.ts";
import { pushKeys } from "./schema.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { addWakes } from "./wake_keys.ts";

/**
 * Largest record: one KV value (64 KiB) less a margin. About 700 room or sender rules; muting
 * more rooms than that is refused rather than spread over several values.
 */
const MAX_RECORD_BYTES = 60_000;

/** The KV adapter of the push rule store. */
export class KvPushRuleStore implements PushRuleStore {
  /** A store over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string): Promise<StoredPushRules> {
    return toStored(await this.kv.get<Uint8Array>(pushKeys.pushRules(userId)));
  }

  async getMany(userIds: readonly string[]): Promise<Map<string, StoredPushRules>> {
    const entries = await getManyChunked<Uint8Array>(this.kv, userIds.map(pushKeys.pushRules));
    return new Map(entries.map((e, i) => [userIds[i], toStored(e)]));
  }

  async version(): Promise<string | null> {
    return (await this.kv.get(pushKeys.pushRulesVersion())).versionstamp;
  }

  async put(userId: string, rules: UserPushRules, expected: string | null): Promise<string | null> {
    const bytes = encodeJson(rules);
    if (bytes.byteLength > MAX_RECORD_BYTES) {
      throw tooLarge("Too many push rules; delete some first");
    }
    const key = pushKeys.pushRules(userId);
    const op = this.kv.atomic().check({ key, versionstamp: expected }).set(key, bytes)
      // Every process's derived rulesets stand on this key (a blind set: edits never conflict).
      .set(pushKeys.pushRulesVersion(), true);
    // Sync's m.push_rules account data is the user's own: their syncs wake with this commit.
    const result = await addWakes(op, { userIds: [userId] }).commit();
    return result.ok ? result.versionstamp : null;
  }

  async changedBetween(userId: string, since: string | undefined, upTo: string): Promise<boolean> {
    const entry = await this.kv.get(pushKeys.pushRules(userId));
    if (entry.versionstamp === null) return since === undefined;
    if (entry.versionstamp > parseSyncToken(upTo)) {
      // Written after the barrier: the next sync reports it. On a full sync the defaults (or
      // the earlier rules) still have to be shown, so report it now all the same.
      return since === undefined;
    }
    return since === undefined || entry.versionstamp > parseSyncToken(since);
  }
}

function toStored(entry: Deno.KvEntryMaybe<Uint8Array>): StoredPushRules {
  if (entry.value === null) return { rules: emptyUserPushRules(), versionstamp: null };
  return { rules: decodeJson<UserPushRules>(entry.value), versionstamp: entry.versionstamp };
}
