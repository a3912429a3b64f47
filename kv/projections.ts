/**
 * Projection planning: given a room's head and events to append, work out every write of the
 * commit (log, ID index, state groups, state around each event, current state, membership,
 * extremities, head). The live append path and replay both plan through this class, so replay
 * proves the very code that wrote the projections. Planning reads committed records through
 * the context and overlays what earlier events of the same batch planned.
 *
 * The state before an event is its prev events' state (resolved when they differ), or a staged
 * state it brings (`stateBefore`); prev events not held fail the append (MissingPrevEvents).
 * Remote events (`checkState`) are authorised here, on the state the commit lands on. Pieces
 * live beside it: batch_lookups.ts (reads before planning), batch_writes.ts (the writes),
 * member_change_plan.ts and state_usage_plan.ts (those projections), large_join.ts.
 */
import { badJson, unsupportedRoomVersion } from "../domain/errors.ts";
import { type RoomEvent, type StateKey, stateKey, toRoomEvent } from "../domain/protocol/events.ts";
import {
  type AppendedEvent,
  type AppendRequest,
  type EventStatus,
  MissingPrevEvents,
  type NewEvent,
  type StagedState,
  type StoredEvent,
} from "../domain/ports/event_store.ts";
import { type RoomVersion, roomVersion } from "../domain/protocol/room_versions.ts";
import { encodeJson } from "./chunked_value.ts";
import { type CommitSize, measureCommit, type PlannedMutation } from "./commit_budget.ts";
import { readEventPlacements, readStoredEvent, readStoredEvents } from "./event_reads.ts";
import { type RelationLookups, RelationPlan } from "./relation_projection.ts";
import { type BatchLookups } from "./batch_lookups.ts";
import { batchWrites, bulkProjectionWrites, eventWrites } from "./batch_writes.ts";
import { diffStates, type StateDelta } from "./state_delta.ts";
import { StateGroupPlanner } from "./state_groups.ts";
import type { StoreContext } from "./store_context.ts";
import {
  type CurrentChange,
  membershipOf,
  noteMemberChanges,
  type PlannedMemberChange,
} from "./member_change_plan.ts";
import { readOutliers } from "./outlier_store.ts";
import {
  type BackwardExtremityPlan,
  backwardReadLimit,
  type CommittedBackward,
  MAX_TRACKED_BACKWARD,
  noteBackwardExtremities,
  readCommittedBackward,
  trackedAfter,
  type TrackedBackward,
} from "./backward_extremities.ts";
import { noteServerChanges, type RoomServersPlan } from "./room_servers.ts";
import { searchPostingDeletes } from "./search_projection.ts";
import { anyTakesEffect, type RedactionEffectLookups } from "./redaction_effects.ts";
import { readStagedState } from "./staged_state.ts";
import {
  emptyStateUsagePlan,
  forkStateUsagePlan,
  noteStateUsage,
  type StateUsagePlan,
} from "./state_usage_plan.ts";
import {
  emptyRoomHead,
  type EventStateGroups,
  type GroupId,
  type RoomHead,
} from "./store_records.ts";

/** An event planned into the batch. */
export interface PlannedEvent {
  eventId: string;
  position: number;
  seq: number;
  status: EventStatus;
  pduBytes: Uint8Array;
  event: RoomEvent;
  groups: EventStateGroups;
  /** The commit checks that no event has this ID yet (see BatchLookups.assumedNew). */
  checkUnstored: boolean;
  /** A redaction later in the batch applies to it: its search terms are not indexed. */
  searchRedacted?: boolean;
  /** The staged state it was appended with (recorded in its log entry for replay). */
  stateBefore?: string;
}

/** A request planned into the batch, with where its events landed. */
export interface PlannedRequest {
  request: AppendRequest;
  appended: AppendedEvent[];
}

/** A room head as committed, with the versionstamp the next commit must check. */
export interface CommittedHead {
  /** null for a room without events (then `versionstamp` is null too). */
  head: RoomHead | null;
  versionstamp: string | null;
}

/** Accepted redactions kept per target event. */
const MAX_REDACTIONS_PER_EVENT = 64;

/** Plans one commit's worth of appends to one room. */
export class RoomBatchPlanner {
  /** The head as committed, null for a room without events. */
  readonly committedHead: RoomHead | null;
  head: RoomHead | null;
  version: RoomVersion | null;
  events: Map<string, PlannedEvent>;
  groups: StateGroupPlanner;
  currentChanges: Map<StateKey, CurrentChange>;
  requests: PlannedRequest[];
  /** Redaction lists this batch changes: target event ID -> accepted redaction IDs. */
  redactions: Map<string, string[]>;
  /** Changes of members' memberships, in planning order (roomid_memberchange). */
  memberChanges: PlannedMemberChange[];
  /** Byte counts of non-member current state, for the state caps (roomid_stateusage). */
  stateUsage: StateUsagePlan;
  /** Joined members per server after the batch, for servers it touched (roomid_servers). */
  roomServers: RoomServersPlan;
  /** Backward extremities the batch opens or fills (roomid_backwardextremity). */
  backwardExtremities: BackwardExtremityPlan;
  /** Relations, threads and timestamps of accepted events (kv/relation_projection.ts). */
  relations: RelationPlan;
  /** Search index entries of earlier events that this batch's redactions delete. */
  searchDeletes: PlannedMutation[];
  #rejected: Set<string>;
  /** The room's committed backward extremities, when the batch had to read them back. */
  #committedBackward: CommittedBackward | undefined;
  readonly #lookups: BatchLookups | undefined;

  private constructor(
    readonly ctx: StoreContext,
    readonly roomId: string,
    readonly headVersionstamp: string | null,
    head: RoomHead | null,
    lookups?: BatchLookups,
  ) {
    this.committedHead = head;
    this.head = head ? { ...head, extremities: [...head.extremities] } : null;
    this.version = head ? versionOf(head.room_version) : null;
    this.events = new Map();
    this.groups = new StateGroupPlanner(ctx, roomId, head?.next_group ?? 0);
    this.currentChanges = new Map();
    this.requests = [];
    this.redactions = new Map();
    this.memberChanges = [];
    this.stateUsage = emptyStateUsagePlan();
    this.roomServers = new Map();
    this.backwardExtremities = new Map();
    this.relations = new RelationPlan(ctx, roomId);
    this.searchDeletes = [];
    this.#rejected = new Set();
    this.#lookups = lookups;
  }

  /** Start a batch from the room's committed head, read from KV. */
  static async open(ctx: StoreContext, roomId: string): Promise<RoomBatchPlanner> {
    const entry = await ctx.kv.get<RoomHead>(ctx.keys.head(roomId));
    return new RoomBatchPlanner(ctx, roomId, entry.versionstamp, entry.value);
  }

  /**
   * Start a batch from a head the caller already holds (which may be stale: the head check
   * then fails the commit), answering look-ups from `lookups` where it can.
   */
  static fromHead(
    ctx: StoreContext,
    roomId: string,
    committed: CommittedHead,
    lookups?: BatchLookups,
  ): RoomBatchPlanner {
    return new RoomBatchPlanner(ctx, roomId, committed.versionstamp, committed.head, lookups);
  }

  /** A copy to plan the next request on, so an oversize request can be dropped. */
  fork(): RoomBatchPlanner {
    const copy = new RoomBatchPlanner(
      this.ctx,
      this.roomId,
      this.headVersionstamp,
      this.committedHead,
      this.#lookups,
    );
    copy.head = this.head ? { ...this.head, extremities: [...this.head.extremities] } : null;
    copy.version = this.version;
    copy.events = new Map(this.events);
    copy.groups = this.groups.fork();
    copy.currentChanges = new Map(this.currentChanges);
    copy.requests = [...this.requests];
    copy.redactions = new Map(this.redactions);
    copy.memberChanges = [...this.memberChanges];
    copy.stateUsage = forkStateUsagePlan(this.stateUsage);
    copy.roomServers = new Map(this.roomServers);
    copy.backwardExtremities = new Map(this.backwardExtremities);
    copy.relations = this.relations.fork();
    copy.searchDeletes = [...this.searchDeletes];
    copy.#rejected = new Set(this.#rejected);
    copy.#committedBackward = this.#committedBackward;
    return copy;
  }

  /** Plan every event of a request, in order. */
  async planRequest(request: AppendRequest): Promise<AppendedEvent[]> {
    if (request.roomId !== this.roomId) throw new Error("request for another room");
    // One batched lookup tells which events are already stored, instead of one read each;
    // usually the batch's lookup answered it before planning began.
    const known = this.#lookups?.stored;
    const missing = request.events.map((e) => e.eventId)
      .filter((id) => !this.events.has(id) && !known?.has(id));
    const read = missing.length > 0 ? await readStoredEvents(this.ctx, missing) : undefined;
    const appended: AppendedEvent[] = [];
    for (const input of request.events) {
      const id = input.eventId;
      const stored = known?.get(id) ?? read?.get(id);
      appended.push(await this.#planEvent(input, request, stored ?? undefined));
    }
    this.requests.push({ request, appended });
    return appended;
  }

  async #planEvent(
    input: NewEvent,
    request: AppendRequest,
    stored: StoredEvent | undefined,
  ): Promise<AppendedEvent> {
    const id = input.eventId;
    const planned = this.events.get(id);
    if (planned) return this.#result(planned.eventId, planned.position, planned.status, true);
    if (stored) {
      return {
        eventId: id,
        roomId: stored.roomId,
        position: stored.position,
        status: stored.status,
        duplicate: true,
      };
    }

    const head = this.#ensureHead(input, request);
    const version = this.version!;
    const event = toRoomEvent(input.pdu, id, version);
    if (event.room_id !== this.roomId) {
      throw badJson(`event ${id} belongs to ${event.room_id}, not ${this.roomId}`);
    }
    const backfill = request.backfill === true;
    const position = backfill ? head.first - 1 : head.last + 1;
    if (backfill) head.first = position;
    else head.last = position;

    const before = input.stateBefore
      ? await this.#stagedGroup(input.stateBefore)
      : await this.#stateBefore(event);
    let status = input.status;
    if (input.checkState && status !== "rejected") {
      status = await this.#checkState(event, status, before, head, backfill);
    }
    const after = status !== "rejected" && event.state_key !== undefined
      ? await this.groups.plan(before, new Map([[stateKey(event.type, event.state_key), id]]))
      : before;
    this.events.set(id, {
      eventId: id,
      position,
      seq: head.seq++,
      status,
      pduBytes: encodeJson(input.pdu),
      event,
      groups: { before, after },
      stateBefore: input.stateBefore?.id,
      // Only server-chosen IDs (v1, v2) can collide with another room's event; a duplicate in
      // this room was either looked up under the checked head or is assumed away and checked.
      checkUnstored: version.eventIdFormat === "server_chosen" ||
        this.#lookups?.assumedNew.has(id) === true,
    });
    if (status === "rejected") this.#rejected.add(id);
    const missingPrevs = await this.#prevsNotInLog(event, input.stateBefore !== undefined);
    let tracked = head.backward_extremities;
    if (tracked === undefined || (tracked === null && (backfill || input.stateBefore))) {
      tracked = await this.#readBackBackward();
    }
    head.backward_extremities = noteBackwardExtremities(
      this.backwardExtremities,
      tracked,
      id,
      position,
      missingPrevs,
    );
    if (status === "accepted" && event.type === "m.room.redaction") {
      await this.#noteRedaction(event);
    }
    if (status === "accepted") {
      await this.relations.noteEvent(event, position, this.#relationLookups());
    }
    if (!backfill && status === "accepted") {
      await this.#advance(head, event, position, before, after);
    }
    head.next_group = this.groups.nextId;
    return this.#result(id, position, status, false);
  }

  /**
   * The auth checks of an event appended with `checkState`, on the state this very plan lands
   * on: against the state before it (failing: rejected), then against current state as the
   * batch has moved it so far (failing: soft-failed). A room with no forward event yet has no
   * current state to hold against it (our join is its first), nor does backfilled history.
   */
  async #checkState(
    event: RoomEvent,
    status: EventStatus,
    before: GroupId | null,
    head: RoomHead,
    backfill: boolean,
  ): Promise<EventStatus> {
    const getEvent = (id: string) => this.#roomEvent(id);
    const version = this.version!;
    const state = await this.groups.state(before);
    const againstBefore = await this.ctx.authorizer({ version, event, state, getEvent });
    if (!againstBefore.allowed) return "rejected";
    if (backfill || head.extremities.length === 0 || head.state_group === before) return status;
    const current = await this.groups.state(head.state_group);
    const againstCurrent = await this.ctx.authorizer({ version, event, state: current, getEvent });
    return againstCurrent.allowed ? status : "soft_failed";
  }

  /** The top group of a staged state of this room (see kv/staged_state.ts). */
  async #stagedGroup(staged: StagedState): Promise<GroupId | null> {
    if (staged.roomId !== this.roomId) {
      throw badJson(`staged state ${staged.id} belongs to ${staged.roomId}, not ${this.roomId}`);
    }
    const record = await readStagedState(this.ctx, this.roomId, staged.id);
    if (!record) throw badJson(`state ${staged.id} of ${this.roomId} was never staged`);
    return record.top;
  }

  /**
   * Index an accepted redaction under its target. Whether it applies (v3+: the redact level or
   * the target's server) is decided on read, when both events are surely known: over federation
   * a redaction may arrive before its target. The first that takes effect (the same rule,
   * kv/redaction_effects.ts) takes a target already held out of search and relation counts; one
   * that does not (reads withhold it) leaves them, and a target arriving later asks again.
   */
  async #noteRedaction(event: RoomEvent): Promise<void> {
    const target = event.redacts;
    if (typeof target !== "string" || target === event.event_id) return;
    let list = this.redactions.get(target);
    if (list === undefined) {
      const entry = await this.ctx.kv.get<string[]>(this.ctx.keys.redactions(this.roomId, target));
      list = entry.value ?? [];
    }
    // Bounded so a flood of redactions cannot grow one value past KV's limit; the first ones
    // win, which replay reproduces because it re-appends in arrival order.
    if (list.length >= MAX_REDACTIONS_PER_EVENT || list.includes(event.event_id)) return;
    this.redactions.set(target, [...list, event.event_id]);
    const effects = this.#redactionEffectLookups();
    if (!(await anyTakesEffect([event.event_id], target, this.version!, effects))) return;
    if (await anyTakesEffect(list, target, this.version!, effects)) return;
    await this.#unindexForSearch(target);
    await this.relations.noteFirstRedaction(target, this.#relationLookups());
  }

  /** What deciding a redaction's effect reads: planned events first, then the log. */
  #redactionEffectLookups(): RedactionEffectLookups {
    return {
      placed: async (id) => {
        const planned = this.events.get(id);
        if (planned) {
          return { event: planned.event, status: planned.status, before: planned.groups.before };
        }
        const [stored, placements] = await Promise.all([
          readStoredEvent(this.ctx, id),
          readEventPlacements(this.ctx, [id]),
        ]);
        const groups = placements.get(id)?.groups;
        if (!stored || stored.roomId !== this.roomId || !groups) return undefined;
        const event = toRoomEvent(stored.pdu, id, this.version!);
        return { event, status: stored.status, before: groups.before };
      },
      state: (group) => this.groups.state(group),
      roomEvents: (ids) => this.#roomEvents(ids),
    };
  }

  /** What the relation plan asks of the batch: planned events first, then committed ones. */
  #relationLookups(): RelationLookups {
    return {
      acceptedEvent: async (id) => {
        const planned = this.events.get(id);
        if (planned) return planned.status === "accepted" ? planned.event : undefined;
        const stored = await readStoredEvent(this.ctx, id);
        if (!stored || stored.roomId !== this.roomId || stored.status !== "accepted") return;
        return toRoomEvent(stored.pdu, id, this.version!);
      },
      redactionNamed: async (id) => {
        let list = this.redactions.get(id);
        if (list === undefined) {
          const key = this.ctx.keys.redactions(this.roomId, id);
          list = (await this.ctx.kv.get<string[]>(key)).value ?? [];
        }
        if (list.length === 0) return false;
        return await anyTakesEffect(list, id, this.version!, this.#redactionEffectLookups());
      },
    };
  }

  /**
   * A target's first accepted redaction takes its terms out of the search index (whether the
   * redaction applies is decided on read; search drops what the pipeline redacts either way).
   */
  async #unindexForSearch(target: string): Promise<void> {
    const planned = this.events.get(target);
    if (planned) {
      // A new object: its writes are cached per planned event.
      if (planned.status === "accepted") {
        this.events.set(target, { ...planned, searchRedacted: true });
      }
      return;
    }
    const stored = await readStoredEvent(this.ctx, target);
    if (!stored || stored.roomId !== this.roomId || stored.status !== "accepted") return;
    this.searchDeletes.push(
      ...searchPostingDeletes(this.ctx.keys, this.roomId, stored.position, stored.pdu),
    );
  }

  #result(eventId: string, position: number, status: EventStatus, duplicate: boolean) {
    return { eventId, roomId: this.roomId, position, status, duplicate };
  }

  #ensureHead(input: NewEvent, request: AppendRequest): RoomHead {
    if (this.head) return this.head;
    const fromCreate = input.pdu.type === "m.room.create" && input.pdu.state_key === ""
      ? input.pdu.content.room_version ?? "1"
      : undefined;
    const versionId = request.roomVersion ?? fromCreate;
    if (typeof versionId !== "string") {
      throw badJson(`room ${this.roomId} is unknown and no room version was given`);
    }
    this.version = versionOf(versionId);
    this.head = emptyRoomHead(versionId);
    return this.head;
  }

  /**
   * The room's open backward extremities at this point of the batch, read back from the
   * projection (kv/backward_extremities.ts says when): the committed entries, read once per
   * batch unless its fills outgrow the read, overlaid with what the batch planned so far.
   */
  async #readBackBackward(): Promise<TrackedBackward> {
    const known = this.#committedBackward &&
      trackedAfter(this.#committedBackward, this.backwardExtremities);
    if (known !== undefined) return known;
    // Some entries past what is needed now, so the batch's later fills rarely read again.
    const limit = backwardReadLimit(this.backwardExtremities) + MAX_TRACKED_BACKWARD;
    this.#committedBackward = await readCommittedBackward(this.ctx, this.roomId, limit);
    return trackedAfter(this.#committedBackward, this.backwardExtremities)!;
  }

  /** The group after a prev event of this room, or undefined when unknown here. */
  async #afterGroup(eventId: string): Promise<GroupId | null | undefined> {
    const planned = this.events.get(eventId);
    if (planned) return planned.groups.after;
    const lookups = this.#lookups?.placements;
    const placement = lookups?.has(eventId)
      ? lookups.get(eventId)
      : (await readEventPlacements(this.ctx, [eventId])).get(eventId);
    if (!placement || placement.roomId !== this.roomId) return undefined;
    if (!placement.groups) throw new Error(`state groups of ${eventId} are missing`);
    return placement.groups.after;
  }

  /**
   * The prev events of `event` not in this room's log nor planned in the batch. Without a staged
   * state every prev is held (planning failed otherwise), so only those that brought one look.
   */
  async #prevsNotInLog(event: RoomEvent, staged: boolean): Promise<string[]> {
    if (!staged) return [];
    const found = await Promise.all(event.prev_events.map((id) => this.#afterGroup(id)));
    return event.prev_events.filter((_, i) => found[i] === undefined);
  }

  /**
   * The state before an event: its one prev's state after, or their resolution. Every prev
   * event must be held in this room's log: guessing a state from part of them (or none) would
   * authorise the event against the wrong state, so the caller must stage one (stateBefore).
   */
  async #stateBefore(event: RoomEvent): Promise<GroupId | null> {
    const groups: (GroupId | null)[] = [];
    const missing: string[] = [];
    // In parallel: prevs not cached would otherwise each wait for their own read.
    const found = await Promise.all(event.prev_events.map((id) => this.#afterGroup(id)));
    found.forEach((group, i) => {
      if (group === undefined) missing.push(event.prev_events[i]);
      else if (!groups.includes(group)) groups.push(group);
    });
    if (missing.length > 0) throw new MissingPrevEvents(this.roomId, event.event_id, missing);
    if (groups.length === 0) return null;
    if (groups.length === 1) return groups[0];
    return await this.#resolveGroups(groups);
  }

  /** Resolve several groups; the result is stored as a delta over the closest of them. */
  async #resolveGroups(groups: readonly (GroupId | null)[]): Promise<GroupId | null> {
    const states = await Promise.all(groups.map((g) => this.groups.state(g)));
    const resolved = await this.ctx.resolver({
      version: this.version!,
      stateMaps: states.map((s) => new Map(s)),
      getEvent: (id) => this.#roomEvent(id),
      isRejected: (id) => this.#rejected.has(id),
    });
    let best = 0;
    let bestDelta: StateDelta | undefined;
    states.forEach((state, i) => {
      const delta = diffStates(state, resolved);
      if (!bestDelta || delta.size < bestDelta.size) {
        best = i;
        bestDelta = delta;
      }
    });
    return await this.groups.plan(groups[best], bestDelta!);
  }

  /** An event of this room: planned in the batch, in the log, or held as an outlier. */
  async #roomEvent(id: string): Promise<RoomEvent | undefined> {
    const planned = this.events.get(id);
    if (planned) return planned.event;
    const stored = await readStoredEvent(this.ctx, id) ??
      (await readOutliers(this.ctx, [id])).get(id);
    if (!stored || stored.roomId !== this.roomId) return undefined;
    if (stored.status === "rejected") this.#rejected.add(id);
    return toRoomEvent(stored.pdu, id, this.version!);
  }

  /** Many events of this room at once (a large state change reads thousands). */
  async #roomEvents(ids: readonly string[]): Promise<Map<string, RoomEvent>> {
    const out = new Map<string, RoomEvent>();
    const unplanned: string[] = [];
    for (const id of ids) {
      const planned = this.events.get(id);
      if (planned) out.set(id, planned.event);
      else unplanned.push(id);
    }
    const logged = await readStoredEvents(this.ctx, unplanned);
    const outliers = await readOutliers(this.ctx, unplanned.filter((id) => !logged.has(id)));
    for (const id of unplanned) {
      const stored = logged.get(id) ?? outliers.get(id);
      if (!stored || stored.roomId !== this.roomId) continue;
      if (stored.status === "rejected") this.#rejected.add(id);
      out.set(id, toRoomEvent(stored.pdu, id, this.version!));
    }
    return out;
  }

  /** Move extremities and current state for an accepted forward event. */
  async #advance(
    head: RoomHead,
    event: RoomEvent,
    position: number,
    before: GroupId | null,
    after: GroupId | null,
  ): Promise<void> {
    const prevs = new Set(event.prev_events);
    const extremities = head.extremities.filter((id) => !prevs.has(id));
    extremities.push(event.event_id);
    const old = head.state_group;
    let next = after;
    if (extremities.length > 1) {
      const groups: (GroupId | null)[] = [];
      const found = await Promise.all(extremities.map((id) => this.#afterGroup(id)));
      found.forEach((group, i) => {
        if (group === undefined) throw new Error(`forward extremity ${extremities[i]} is missing`);
        if (!groups.includes(group)) groups.push(group);
      });
      next = groups.length === 1 ? groups[0] : await this.#resolveGroups(groups);
    }
    if (next !== old) {
      if (before === old && next === after) {
        if (after !== before) {
          const key = stateKey(event.type, event.state_key!);
          await this.#noteMemberChanges(position, [[key, event]]);
          await this.#noteStateUsage([[key, event]]);
          this.#changeCurrent(key, event);
        }
      } else {
        const delta = diffStates(await this.groups.state(old), await this.groups.state(next));
        const ids = [...delta.values()].filter((id): id is string => id !== null);
        const events = await this.#roomEvents(ids);
        const changes: [StateKey, RoomEvent | null, string | null][] = [];
        for (const [key, id] of delta) {
          changes.push([key, id === null ? null : events.get(id) ?? null, id]);
        }
        await this.#noteMemberChanges(position, changes);
        await this.#noteStateUsage(changes);
        for (const [key, changed, id] of changes) this.#changeCurrent(key, changed, id);
      }
    }
    head.extremities = extremities;
    head.state_group = next;
  }

  #changeCurrent(key: StateKey, event: RoomEvent | null, eventId?: string | null): void {
    if (event === null) {
      if (eventId) throw new Error(`state event ${eventId} is missing`);
      this.currentChanges.set(key, null);
      return;
    }
    const change: CurrentChange = { eventId: event.event_id };
    if (event.type === "m.room.member") change.membership = membershipOf(event);
    this.currentChanges.set(key, change);
  }

  /**
   * Note the membership changes `changes` make (kv/member_change_plan.ts) and move the servers'
   * joined counts with them (kv/room_servers.ts).
   */
  async #noteMemberChanges(
    position: number,
    changes: readonly (readonly [StateKey, RoomEvent | null, ...unknown[]])[],
  ): Promise<void> {
    const noted = this.memberChanges.length;
    const noneCommitted = this.committedHead === null;
    await noteMemberChanges(
      this.ctx,
      this.roomId,
      this.currentChanges,
      this.memberChanges,
      position,
      changes,
      noneCommitted,
    );
    const added = this.memberChanges.slice(noted);
    await noteServerChanges(this.ctx, this.roomId, this.roomServers, added, noneCommitted);
  }

  /** Move the state usage counts with `changes` (kv/state_usage_plan.ts). */
  async #noteStateUsage(
    changes: readonly (readonly [StateKey, RoomEvent | null, ...unknown[]])[],
  ): Promise<void> {
    await noteStateUsage(this.ctx, this.roomId, this.stateUsage, changes);
  }

  /** Every check and write of the batch so far, extra mutations of its requests included. */
  mutations(): PlannedMutation[] {
    const out: PlannedMutation[] = [];
    for (const planned of this.events.values()) {
      out.push(...eventWrites(this.ctx, this.roomId, planned).mutations);
    }
    out.push(...this.groups.mutations());
    out.push(...batchWrites(this));
    out.push(...this.bulkProjectionWrites());
    return out;
  }

  /**
   * The writes of a commit too large for KV when it creates a room's head from a large state
   * (our join to a big room): `bulk`, the current state, membership, member change and state
   * usage entries, goes ahead in commits of its own while the room still has no head (see
   * kv/large_join.ts); `final` is the rest, the head last of all.
   */
  splitMutations(): { bulk: PlannedMutation[]; final: PlannedMutation[] } {
    const final: PlannedMutation[] = [];
    for (const planned of this.events.values()) {
      final.push(...eventWrites(this.ctx, this.roomId, planned).mutations);
    }
    final.push(...this.groups.mutations());
    final.push(...batchWrites(this));
    return { bulk: this.bulkProjectionWrites(), final };
  }

  /** The estimated size of `mutations()`, reusing the measure of each event's own writes. */
  size(): CommitSize {
    const total = measureCommit([...batchWrites(this), ...this.bulkProjectionWrites()]);
    const parts = [
      ...[...this.events.values()].map((e) => eventWrites(this.ctx, this.roomId, e).size),
    ];
    parts.push(this.groups.size());
    for (const part of parts) {
      total.mutations += part.mutations;
      total.checks += part.checks;
      total.mutationBytes += part.mutationBytes;
      total.keyBytes += part.keyBytes;
    }
    return total;
  }

  /** Projection entries that scale with a state change (kv/batch_writes.ts). */
  bulkProjectionWrites(): PlannedMutation[] {
    return bulkProjectionWrites(this);
  }
}

function versionOf(id: string): RoomVersion {
  const version = roomVersion(id);
  if (!version) throw unsupportedRoomVersion(id);
  return version;
}
