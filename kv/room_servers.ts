/**
 * The room servers projection (`roomid_servers`): per room, each server with users joined in the
 * current state and how many. Planned from the batch's member changes (kv/member_change_plan.ts
 * works out each change with the membership it replaces) and written with current state in the
 * same commit, so a federation read asking "is this server in the room" costs one key, not a
 * listing of every member. A batch that changes no membership reads and writes nothing here.
 */
import { serverNameOf } from "../domain/protocol/auth_context.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import { getManyChunked } from "./get_many.ts";
import type { PlannedMemberChange } from "./member_change_plan.ts";
import type { StoreContext } from "./store_context.ts";

/** Joined members per server as they stand after the batch, for the servers it touched. */
export type RoomServersPlan = Map<string, number>;

/**
 * Move the servers' joined counts with member changes: a user entering `join` adds one to their
 * server, one leaving it (leave, ban, invite after a kick, or the entry removed) takes one away.
 * Committed counts are read once per server per batch, under the head the commit checks;
 * `noneCommitted` (the room has no head yet) counts from zero, so leftovers of an interrupted
 * large join are overwritten rather than added to.
 */
export async function noteServerChanges(
  ctx: StoreContext,
  roomId: string,
  plan: RoomServersPlan,
  changes: readonly PlannedMemberChange[],
  noneCommitted = false,
): Promise<void> {
  const moves: [string, number][] = [];
  for (const { userId, membership, prev } of changes) {
    const joins = membership === "join";
    if (joins !== (prev === "join")) moves.push([serverNameOf(userId), joins ? 1 : -1]);
  }
  if (moves.length === 0) return;
  const unread = [...new Set(moves.map(([server]) => server))].filter((s) => !plan.has(s));
  if (noneCommitted) { for (const server of unread) plan.set(server, 0); }
  else {
    const read = await getManyChunked<number>(
      ctx.kv,
      unread.map((server) => ctx.keys.roomServer(roomId, server)),
    );
    unread.forEach((server, i) => plan.set(server, read[i].value ?? 0));
  }
  // Below zero only in a store written before this projection existed (replay builds it): the
  // server is out either way, and refusing the append would stop the room.
  for (const [server, move] of moves) plan.set(server, Math.max(0, plan.get(server)! + move));
}

/** The projection's writes: a server left with no joined member loses its entry. */
export function roomServerWrites(
  keys: StoreContext["keys"],
  roomId: string,
  plan: RoomServersPlan,
): PlannedMutation[] {
  const out: PlannedMutation[] = [];
  for (const [server, count] of plan) {
    const key = keys.roomServer(roomId, server);
    out.push(count === 0 ? { op: "delete", key } : { op: "set", key, value: count });
  }
  return out;
}

/** Servers with users joined to the room, and how many each (one list of the servers). */
export async function readServersInRoom(
  ctx: StoreContext,
  roomId: string,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const prefix = ctx.keys.roomServerPrefix(roomId);
  for await (const entry of ctx.kv.list<number>({ prefix }, { batchSize: 1000 })) {
    out.set(entry.key[entry.key.length - 1] as string, entry.value);
  }
  return out;
}

/** Whether `serverName` has a user joined to the room (one key read). */
export async function readIsServerInRoom(
  ctx: StoreContext,
  roomId: string,
  serverName: string,
): Promise<boolean> {
  const entry = await ctx.kv.get<number>(ctx.keys.roomServer(roomId, serverName));
  return (entry.value ?? 0) > 0;
}
