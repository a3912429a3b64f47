/**
 * The commits ahead of an append that creates a room's head from a staged state (our join to a
 * remote room). Its current state can hold thousands of entries, each with its membership
 * records both ways, more than one commit takes; those entries go first, in commits of their
 * own, each checking that the room still has no head, and the append's own commit (log entry,
 * state groups, head) lands last. Until the head exists no read treats the room as known (the
 * membership lists can show its entries early, for moments).
 *
 * A crash in between leaves entries without a head. The retried join plans the same writes
 * (same staged state, same event) and first deletes whatever an earlier attempt left that the
 * new plan does not write, so an interrupted join with another state cleans up after itself.
 */
import { type PlannedMutation, SplitCommitWriter } from "./commit_budget.ts";
import { compareKeys } from "./key_order.ts";
import type { StoreContext } from "./store_context.ts";

/**
 * Commit `bulk` ahead of the final commit of a plan creating `roomId`'s head, deleting earlier
 * leftovers first. Returns false (having stopped) when the room got a head meanwhile.
 */
export async function commitAhead(
  ctx: StoreContext,
  roomId: string,
  bulk: readonly PlannedMutation[],
): Promise<boolean> {
  const written = new Set(bulk.map((m) => JSON.stringify(m.key, keyPart)));
  const leftovers = await listLeftovers(ctx, roomId, written);
  const check: PlannedMutation = { op: "check", key: ctx.keys.head(roomId), versionstamp: null };
  const writer = new SplitCommitWriter(ctx.kv, [check]);
  for (const mutation of [...leftovers, ...bulk]) {
    if (!(await writer.add([mutation]))) return false;
  }
  return await writer.flush();
}

/** Deletes of projection entries of a headless room that `written` does not cover. */
async function listLeftovers(
  ctx: StoreContext,
  roomId: string,
  written: ReadonlySet<string>,
): Promise<PlannedMutation[]> {
  const keys = ctx.keys;
  const out: PlannedMutation[] = [];
  const prefixes = [
    keys.currentStatePrefix(roomId),
    keys.roomMemberPrefix(roomId),
    keys.memberChangePrefix(roomId),
    keys.stateUsagePrefix(roomId),
    keys.roomServerPrefix(roomId),
  ];
  const memberPrefix = keys.roomMemberPrefix(roomId);
  for (const prefix of prefixes) {
    for await (const entry of ctx.kv.list({ prefix }, { batchSize: 1000 })) {
      if (written.has(JSON.stringify(entry.key, keyPart))) continue;
      out.push({ op: "delete", key: entry.key });
      const isMember = entry.key.length === memberPrefix.length + 1 &&
        compareKeys(entry.key.slice(0, memberPrefix.length), memberPrefix) === 0;
      if (isMember) {
        out.push({
          op: "delete",
          key: keys.userRoom(entry.key[entry.key.length - 1] as string, roomId),
        });
      }
    }
  }
  return out;
}

/** JSON.stringify replacer for key parts JSON cannot spell (bigint, bytes). */
function keyPart(_: string, value: unknown): unknown {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return [...value];
  return value;
}
