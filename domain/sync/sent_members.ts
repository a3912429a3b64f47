/**
 * Lazy-loaded members are not sent twice: with `lazy_load_members` and without
 * `include_redundant_members`, a member event a device already received is left out of later
 * incremental syncs (SyTest: "We don't send redundant membership state across incremental syncs
 * by default"). What a device was sent is remembered in the store, per room, with the
 * `next_batch` of the response that carried it: a sync from token T counts as known only what
 * went out in responses up to T. A response the client never received (a dropped connection,
 * a retry with the older token) therefore counts for nothing, and a retried sync sends the
 * members again. An initial sync starts the memory afresh, as Synapse clears its cache.
 */
import type { Filter } from "../protocol/event_filter.ts";
import type { StoredEvent } from "../ports/event_store.ts";
import type { SentMember, SentMembersStore } from "../ports/sent_members_store.ts";

/** Members remembered per device and room (Synapse keeps 100 per device in memory). */
export const MAX_SENT_MEMBERS = 100;

const MEMBER = "m.room.member";

/** One room's sync, as far as the memory is concerned. */
export interface SentMembersScope {
  userId: string;
  deviceId: string;
  roomId: string;
  since?: string;
  fullState: boolean;
  /** This response's `next_batch`. */
  upTo: string;
}

/** Whether the filter asks for member events to be sent only once. */
export function dedupesMembers(filter: Filter): boolean {
  const state = filter.room?.state;
  return state?.lazy_load_members === true && state.include_redundant_members !== true;
}

/** Reads and writes what each device was sent. */
export class SentMembers {
  /** Over the store; without one, members are sent every time (redundant, never missing). */
  constructor(private readonly store?: SentMembersStore) {}

  /** What the device is known to have received before this sync (empty on a fresh start). */
  async known(scope: SentMembersScope): Promise<Map<string, SentMember>> {
    if (!this.store || scope.since === undefined) return new Map();
    return await this.store.get(scope.userId, scope.deviceId, scope.roomId);
  }

  /**
   * The state section without member events the device received in a response up to `since`
   * (none dropped on `full_state`: the client asked for everything).
   */
  dropKnown(
    scope: SentMembersScope,
    known: ReadonlyMap<string, SentMember>,
    state: readonly StoredEvent[],
  ): StoredEvent[] {
    const since = scope.since;
    if (since === undefined || scope.fullState) return [...state];
    return state.filter((e) => {
      if (e.pdu.type !== MEMBER || typeof e.pdu.state_key !== "string") return true;
      const sent = known.get(e.pdu.state_key);
      return !(sent && sent.eventId === e.eventId && sent.token <= since);
    });
  }

  /** Remember the member events of this response's state section and timeline. */
  async remember(
    scope: SentMembersScope,
    known: ReadonlyMap<string, SentMember>,
    events: readonly StoredEvent[],
  ): Promise<void> {
    if (!this.store) return;
    const next = new Map(scope.since === undefined ? [] : known);
    // A fresh start always rewrites: an older record would claim members this client lacks.
    let changed = scope.since === undefined;
    for (const e of events) {
      if (e.pdu.type !== MEMBER || typeof e.pdu.state_key !== "string") continue;
      const before = next.get(e.pdu.state_key);
      if (before?.eventId === e.eventId && before.token <= scope.upTo) continue;
      next.set(e.pdu.state_key, { eventId: e.eventId, token: scope.upTo });
      changed = true;
    }
    if (!changed) return;
    // Past the bound the oldest go: at worst a member is sent once more.
    const kept = [...next].sort((
      [, a],
      [, b],
    ) => (a.token < b.token ? 1 : a.token > b.token ? -1 : 0))
      .slice(0, MAX_SENT_MEMBERS);
    await this.store.put(scope.userId, scope.deviceId, scope.roomId, new Map(kept));
  }
}
