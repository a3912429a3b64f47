/**
 * Planning the member change projection (`roomid_memberchange`): each change of a user's
 * membership in a room's current state, at the position of the event whose append caused it,
 * with the membership it replaces. Device-list tracking reads these to find who joined or left
 * a room in a sync window without walking the room's log.
 */
import { type RoomEvent, splitStateKey, type StateKey } from "../domain/protocol/events.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import { getManyChunked } from "./get_many.ts";
import type { StoreContext } from "./store_context.ts";
import type { MemberChangeHead, MemberChangeRecord, MembershipRecord } from "./store_records.ts";

/** A membership change of the batch, at the position of the event whose append caused it. */
export interface PlannedMemberChange {
  position: number;
  userId: string;
  membership: string | null;
  prev: string | null;
}

/** A change to the current state projection; null removes the entry. */
export type CurrentChange = { eventId: string; membership?: string } | null;

/** The membership a member event gives its user (a missing or odd value counts as leave). */
export function membershipOf(event: RoomEvent): string {
  const membership = event.content.membership;
  return typeof membership === "string" ? membership : "leave";
}

/**
 * Before current state takes `changes`, note each member whose membership they change, with
 * the membership it replaces (from earlier in the batch, `currentChanges`, else the committed
 * projection, read under the head this commit checks).
 */
export async function noteMemberChanges(
  ctx: StoreContext,
  roomId: string,
  currentChanges: ReadonlyMap<StateKey, CurrentChange>,
  out: PlannedMemberChange[],
  position: number,
  changes: readonly (readonly [StateKey, RoomEvent | null, ...unknown[]])[],
  /** The room has no head yet, so no committed membership counts (leftovers are cleared). */
  noneCommitted = false,
): Promise<void> {
  const members: { key: StateKey; userId: string; membership: string | null }[] = [];
  for (const [key, event] of changes) {
    const [type, userId] = splitStateKey(key);
    if (type !== "m.room.member") continue;
    members.push({ key, userId, membership: event === null ? null : membershipOf(event) });
  }
  if (members.length === 0) return;
  const unread = noneCommitted ? [] : members.filter((m) => !currentChanges.has(m.key));
  const committed = await getManyChunked<MembershipRecord>(
    ctx.kv,
    unread.map((m) => ctx.keys.roomMember(roomId, m.userId)),
  );
  const prior = new Map(unread.map((m, i) => [m.key, committed[i].value?.membership ?? null]));
  for (const { key, userId, membership } of members) {
    const prev = currentChanges.has(key)
      ? currentChanges.get(key)?.membership ?? null
      : prior.get(key) ?? null;
    if (prev !== membership) out.push({ position, userId, membership, prev });
  }
}

/** The member change records of a batch (the bulk a large join may commit ahead). */
export function memberChangeRecordWrites(
  ctx: StoreContext,
  roomId: string,
  changes: readonly PlannedMemberChange[],
): PlannedMutation[] {
  return changes.map(({ position, userId, membership, prev }): PlannedMutation => {
    const value: MemberChangeRecord = { membership, prev };
    return { op: "set", key: ctx.keys.memberChange(roomId, position, userId), value };
  });
}

/** The room's member change marker and the commit's stamp, when the batch changed any. */
export function memberChangeMarkerWrites(
  ctx: StoreContext,
  roomId: string,
  changes: readonly PlannedMemberChange[],
): PlannedMutation[] {
  if (changes.length === 0) return [];
  const last = changes.reduce((max, c) => Math.max(max, c.position), changes[0].position);
  const value: MemberChangeHead = { position: last };
  const stamped = [...ctx.keys.memberChangeStampPrefix(), ctx.kv.commitVersionstamp()];
  return [
    { op: "set", key: ctx.keys.memberChangeHead(roomId), value },
    { op: "set", key: stamped, value: roomId },
  ];
}
