/**
 * Stage 1 of the read pipeline: which stored events a user may see, by the spec's history
 * visibility algorithm (client-server spec, "Room History Visibility"; the pure rule is
 * domain/history_visibility.ts). It reads what the rule needs, the visibility in force and the
 * user's membership in the state before each event, as few times as it can: not at all for
 * events after the user's current join, once per linear chain of events otherwise.
 */
import { type StateKey, stateKey } from "../protocol/events.ts";
import {
  governingVisibility,
  historyVisibilityOf,
  mayViewEvent,
} from "../protocol/history_visibility.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";

const HISTORY_VISIBILITY_KEY: StateKey = stateKey("m.room.history_visibility", "");

/** Stage 1's answer for timeline events. */
export interface TimelineVisibility {
  /** The events the user may see, in the order given. */
  visible: StoredEvent[];
  /**
   * Those of `visible` the user was not joined at when they were sent (seen through `shared`,
   * `invited` or `world_readable` history): erased senders' events are redacted for them.
   * The user's own membership events are never in it.
   */
  unjoined: ReadonlySet<string>;
}

/** What a user may see of a room's events, read from the event store. */
export class HistoryVisibilityFilter {
  /** Over the event store's state reads. */
  constructor(private readonly store: EventReader) {}

  /** The user's current membership event in the room; null when they never had one. */
  async membershipOf(userId: string, roomId: string): Promise<StoredEvent | null> {
    const id = await this.store.currentStateEventId(roomId, "m.room.member", userId);
    return id ? await this.store.getEvent(id) : null;
  }

  /** Whether the room's current history visibility is world_readable. */
  async worldReadable(roomId: string): Promise<boolean> {
    const id = await this.store.currentStateEventId(roomId, "m.room.history_visibility", "");
    const event = id ? await this.store.getEvent(id) : null;
    return historyVisibilityOf(event?.pdu.content) === "world_readable";
  }

  /**
   * Stage 1 for timeline events. Fast path, with no read: the reader's own membership events,
   * events after the reader's current join (they were joined when those were sent, which the
   * spec's rule allows whatever the visibility; local writes are linear, so a later position
   * means a later event) and the create event. Every other event is decided by the visibility
   * and the reader's membership in the state before it, read in one batch (rare on the hot
   * path: a joined reader's timeline is almost always after their join).
   */
  async visibleTimeline(
    userId: string,
    events: readonly StoredEvent[],
    membership: StoredEvent | null,
  ): Promise<TimelineVisibility> {
    const unjoined = new Set<string>();
    if (events.length === 0) return { visible: [], unjoined };
    const current = membershipValue(membership);
    const joinedLater = current === "join";
    const hidden = new Set<string>();
    const undecided = events.filter((e) => {
      if (this.#obviouslyVisible(userId, e, membership)) return false;
      // Nothing is in force before the create event: `shared` by default and no membership,
      // so it is visible exactly to those joined later (no state read needed).
      if (e.pdu.type === "m.room.create" && e.pdu.state_key === "") {
        if (!joinedLater) hidden.add(e.eventId);
        else unjoined.add(e.eventId);
        return false;
      }
      return true;
    });
    if (undecided.length > 0) {
      const found = await this.#hiddenByHistory(userId, undecided, joinedLater, events, unjoined);
      for (const id of found) hidden.add(id);
    }
    if (joinedLater) await this.#showCurrentState(events, hidden);
    const visible = hidden.size === 0 ? [...events] : events.filter((e) => !hidden.has(e.eventId));
    return { visible, unjoined };
  }

  /**
   * A joined reader sees the room's current state anyway (`/state`, sync's state section), so a
   * hidden timeline event that still is current state is shown where it happened, as Synapse's
   * sync does (`always_include_ids`): a rejoiner learns who joined while they were away from the
   * timeline, not only from a state section. One read of those keys, only when one is hidden.
   */
  async #showCurrentState(events: readonly StoredEvent[], hidden: Set<string>): Promise<void> {
    const candidates = events.filter((e) => hidden.has(e.eventId) && e.pdu.state_key !== undefined);
    if (candidates.length === 0) return;
    const keys = candidates.map((e) => stateKey(e.pdu.type, e.pdu.state_key!));
    const current = await this.store.currentStateEventIds(candidates[0].roomId, keys);
    candidates.forEach((e, i) => {
      if (current.get(keys[i]) === e.eventId) hidden.delete(e.eventId);
    });
  }

  #obviouslyVisible(userId: string, event: StoredEvent, membership: StoredEvent | null) {
    // Users always see their own membership changes, such as the leave that ended their view.
    if (event.pdu.type === "m.room.member" && event.pdu.state_key === userId) return true;
    return membershipValue(membership) === "join" && membership !== null &&
      event.position > membership.position;
  }

  /**
   * Events the spec's algorithm hides from `userId`. What it needs of the state before each
   * event (the history visibility and the user's membership) is read once per chain: when an
   * event's only prev_event is the event before it in `context` (linear history, as local
   * writes are), the state before it is the state before that one plus that one, so it follows
   * without a read. A timeline of ten events before a join costs one state read, not ten.
   * Events shown although the user was not joined when they were sent go into `unjoined`.
   */
  async #hiddenByHistory(
    userId: string,
    undecided: readonly StoredEvent[],
    joinedLater: boolean,
    context: readonly StoredEvent[] = undecided,
    unjoined = new Set<string>(),
  ): Promise<Set<string>> {
    const store = this.store;
    const memberKey = stateKey("m.room.member", userId);
    const wanted = new Set(undecided.map((e) => e.eventId));
    const ordered = [...context].sort((a, b) => a.position - b.position);
    // Chains: runs of events each following the one before; a read starts each run that holds
    // an undecided event.
    const runs: StoredEvent[][] = [];
    ordered.forEach((event, i) => {
      const prev = ordered[i - 1];
      const follows = prev !== undefined && onlyPrevEvent(event) === prev.eventId;
      if (follows) runs.at(-1)!.push(event);
      else runs.push([event]);
    });
    const needed = runs.filter((run) => run.some((e) => wanted.has(e.eventId)));
    const starts = await Promise.all(
      needed.map((run) => store.stateAtEvent(run[0].eventId, "before")),
    );
    const facts = new Map<string, { hv?: string; member?: string }>();
    needed.forEach((run, r) => {
      let hv = starts[r]?.get(HISTORY_VISIBILITY_KEY);
      let member = starts[r]?.get(memberKey);
      for (const event of run) {
        facts.set(event.eventId, { hv, member });
        const { type, state_key } = event.pdu;
        if (type === "m.room.history_visibility" && state_key === "") hv = event.eventId;
        if (type === "m.room.member" && state_key === userId) member = event.eventId;
      }
    });
    const known = new Map(context.map((e) => [e.eventId, e]));
    const ids = new Set<string>();
    for (const id of wanted) {
      const { hv, member } = facts.get(id) ?? {};
      for (const x of [hv, member]) if (x !== undefined && !known.has(x)) ids.add(x);
    }
    const fetched = ids.size > 0 ? await store.getEvents([...ids]) : new Map<string, StoredEvent>();
    const lookup = (id: string | undefined) =>
      id === undefined ? undefined : known.get(id) ?? fetched.get(id);
    const hidden = new Set<string>();
    for (const event of undecided) {
      const pdu = event.pdu;
      if (pdu.type === "m.room.member" && pdu.state_key === userId) continue;
      const { hv, member } = facts.get(event.eventId) ?? {};
      let visibility = historyVisibilityOf(lookup(hv)?.pdu.content);
      if (pdu.type === "m.room.history_visibility" && pdu.state_key === "") {
        visibility = governingVisibility(visibility, historyVisibilityOf(pdu.content));
      }
      const membership = lookup(member)?.pdu.content.membership;
      const visible = mayViewEvent({
        visibility,
        membershipAtEvent: typeof membership === "string" ? membership : undefined,
        joinedLater,
      });
      if (!visible) hidden.add(event.eventId);
      else if (membership !== "join") unjoined.add(event.eventId);
    }
    return hidden;
  }

  /**
   * Stage 1 for state events from a snapshot. A member sees the state they were joined at (the
   * current state, or the state as they left after being joined), and anyone sees a
   * world-readable room's state. A user who never joined (a withdrawn knock, a rejected or
   * withdrawn invite) sees only state events history visibility lets them see: their own
   * membership, and under `invited` what was sent while they were invited, as the spec's
   * algorithm says for any event.
   */
  async visibleState(
    userId: string,
    roomId: string,
    events: readonly StoredEvent[],
    membership: StoredEvent | null,
  ): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const current = membershipValue(membership);
    if (current === "join") return [...events];
    if (membership && (current === "leave" || current === "ban")) {
      if (await this.wasJoinedBefore(membership)) return [...events];
    }
    if (await this.worldReadable(roomId)) return [...events];
    const undecided = events.filter((e) =>
      !(e.pdu.type === "m.room.member" && e.pdu.state_key === userId)
    );
    const hidden = await this.#hiddenByHistory(userId, undecided, false);
    return events.filter((e) => !hidden.has(e.eventId));
  }

  /**
   * Whether the user was joined right before this leave or ban: a former member, who may see
   * the room's state as they left it. A withdrawn knock, a rejected or withdrawn invite was
   * never joined.
   */
  async wasJoinedBefore(membership: StoredEvent): Promise<boolean> {
    const before = await this.store.stateAtEvent(membership.eventId, "before");
    const id = before?.get(stateKey("m.room.member", membership.pdu.state_key ?? ""));
    const prev = id ? await this.store.getEvent(id) : null;
    return membershipValue(prev) === "join";
  }
}

/** The event's prev_event when it has exactly one (either ID format), else undefined. */
function onlyPrevEvent(event: StoredEvent): string | undefined {
  const prev = event.pdu.prev_events;
  if (prev.length !== 1) return undefined;
  const first = prev[0];
  return typeof first === "string" ? first : first[0];
}

/** The `membership` of a member event, when it is a string. */
export function membershipValue(event: StoredEvent | null | undefined): string | undefined {
  const m = event?.pdu.content.membership;
  return typeof m === "string" ? m : undefined;
}
