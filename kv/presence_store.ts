/** Presence in KV: one record per user and one server-wide change index. */
import type { PresenceRecord, PresenceStore } from "../domain/ports/presence_store.ts";
import { getManyChunked } from "./get_many.ts";
import { presenceChangePrefix, presenceKey } from "./schema.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { listChanges, writeVersioned } from "./versioned_records.ts";
import { applyMutations, type CommitSize } from "./commit_budget.ts";
import { commitWakes, fitWakes, roomsOfUsers } from "./wake_fanout.ts";

/**
 * Audiences above this size first list the window's changes, stopping once they outnumber the
 * audience: a window usually holds fewer changes than a large room has members. Smaller
 * audiences are read by key (at most ten getMany calls).
 */
const LIST_WINDOW_ABOVE = 100;

/** An upper bound of a presence write's own commit: check, record, index entry and its delete. */
const PRESENCE_WRITE: CommitSize = {
  mutations: 3,
  checks: 1,
  mutationBytes: 8192,
  keyBytes: 2048,
};

/** The KV implementation of the presence port. */
export class KvPresenceStore implements PresenceStore {
  /** Store presence in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string): Promise<PresenceRecord | null> {
    return (await this.kv.get<PresenceRecord>(presenceKey(userId))).value;
  }

  async getMany(userIds: readonly string[]): Promise<PresenceRecord[]> {
    const entries = await getManyChunked<PresenceRecord>(this.kv, userIds.map(presenceKey));
    return entries.flatMap((entry) => entry.value === null ? [] : [entry.value]);
  }

  async put(record: PresenceRecord, options?: { wake?: boolean }): Promise<string> {
    const key = presenceKey(record.userId);
    // A visible change reaches the user and everyone sharing a joined room with them: as many
    // of those wake keys as fit go in the change's commit, the rest right after it.
    const wakes = options?.wake
      ? fitWakes({
        userIds: [record.userId],
        roomIds: await roomsOfUsers(this.kv, [record.userId], ["join"]),
      }, PRESENCE_WRITE)
      : { now: [], rest: [] };
    const stamp = await writeVersioned<PresenceRecord>(this.kv, key, () => ({
      key,
      value: record,
      changePrefix: presenceChangePrefix(),
      extra: (op) => applyMutations(op, wakes.now),
    }));
    await commitWakes(this.kv, wakes.rest);
    return stamp!;
  }

  async changes(options: { since?: string; upTo: string }): Promise<PresenceRecord[]> {
    const changes = await listChanges<PresenceRecord>(
      this.kv,
      presenceChangePrefix(),
      options.since,
      options.upTo,
    );
    return changes.map((c) => c.value);
  }

  async changesOf(
    audience: () => Promise<readonly string[]>,
    options: { since?: string; upTo: string },
  ): Promise<PresenceRecord[]> {
    const since = options.since === undefined ? undefined : parseSyncToken(options.since);
    const upTo = parseSyncToken(options.upTo);
    if (since !== undefined) {
      // Most long-polls wake to windows without presence changes: one short list answers them
      // without the audience, which costs a member list per joined room.
      if ((await this.#windowUpTo(since, upTo, 1))?.length === 0) return [];
      const userIds = await audience();
      if (userIds.length > LIST_WINDOW_ABOVE) {
        const listed = await this.#windowUpTo(since, upTo, userIds.length);
        if (listed) {
          const wanted = new Set(userIds);
          return listed.filter((r) => wanted.has(r.userId));
        }
      }
      return this.#byKey(userIds, since, upTo);
    }
    return this.#byKey(await audience(), since, upTo);
  }

  /** Records of `userIds` last written in (since, upTo], read by key. */
  async #byKey(
    userIds: readonly string[],
    since: string | undefined,
    upTo: string,
  ): Promise<PresenceRecord[]> {
    // A record and its index entry share a commit, so the record's versionstamp places it in
    // the window exactly as its index entry would.
    const entries = await getManyChunked<PresenceRecord>(this.kv, userIds.map(presenceKey));
    const out: PresenceRecord[] = [];
    for (const entry of entries) {
      if (entry.value === null || entry.versionstamp > upTo) continue;
      if (since !== undefined && entry.versionstamp <= since) continue;
      out.push(entry.value);
    }
    return out;
  }

  /** Changes in (since, upTo], or null when there are at least `limit` of them. */
  async #windowUpTo(
    since: string,
    upTo: string,
    limit: number,
  ): Promise<PresenceRecord[] | null> {
    const prefix = presenceChangePrefix();
    const out: PresenceRecord[] = [];
    const iter = this.kv.list<PresenceRecord>(
      { start: [...prefix, since], end: [...prefix, upTo, 0] },
      // One more than `limit`, plus the entry at `since` itself, which is outside the window.
      { limit: limit + 2, batchSize: Math.min(limit + 2, 500) },
    );
    for await (const entry of iter) {
      if (entry.key[entry.key.length - 1] === since) continue;
      if (out.length === limit) return null;
      out.push(entry.value);
    }
    return out;
  }
}
