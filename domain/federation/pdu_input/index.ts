/**
 * The incoming-PDU handler: every event another server gives us (`/send`, the membership
 * handshakes, backfill) passes these steps, in the order of the spec's "Checks performed on
 * receipt of a PDU" (server-server API), one file per step:
 *
 * 1. format.ts: a valid event of the room's version (required fields and types, 65,536 bytes
 *    of canonical JSON, references in the version's format, event ID computed from v3 or
 *    carried in v1/v2), else dropped;
 * 2. signatures.ts: signed by every server that must sign it, else dropped;
 * 3. content_hash.ts: the content hash matches, else the event is redacted and the redacted
 *    copy goes on (and is what we store);
 * 4. auth_events.ts: the auth rules pass against the event's own auth events, else rejected.
 *    Auth events we lack are fetched from the sender (missing_auth_events.ts), each checked
 *    through steps 1-4 itself and stored as an outlier (fetched_events.ts);
 * 5. the auth rules pass against the state before the event, else rejected;
 * 6. the auth rules pass against the room's current state, else soft-failed (stored, but
 *    neither shown nor built upon).
 *
 * Steps 5 and 6 run inside the store's planner (`NewEvent.checkState`): the append of a remote
 * event goes through the room's queue like a local send, and both checks read exactly the
 * state the commit lands on, so a concurrent local ban or demotion cannot slip between the
 * check and the write. Between steps 3 and 4, prev events we lack are looked for
 * (missing_prev_events.ts), as Synapse does, so that even an event rejected later has its
 * place in the DAG and later events resting on it find it: `/get_missing_events` first (its
 * events handled oldest first, like PDUs). When a gap remains before one of those pulled
 * events (or a backfilled one), the state before it comes from `/state_ids`, staged with
 * `stageState` and passed as its `stateBefore`; a pushed event whose prev events the sender
 * withholds even then is dropped, as Synapse does (its sender's word for the state would be
 * all we had of the room's end).
 *
 * An accepted remote event runs the same hooks as a local one (push notifications, guest
 * eviction): their writes ride in its commit, but only when the planner kept it `accepted`.
 */
import { type Pdu, type RoomEvent, type StateMap, toRoomEvent } from "../../protocol/events.ts";
import type { LocalEventHook, PreparedEventWrites } from "../../local_event_sender.ts";
import { type RoomVersion, roomVersion } from "../../protocol/room_versions.ts";
import {
  type AppendedEvent,
  type EventStore,
  type FoundEvent,
  MissingPrevEvents,
  type RoomHeadView,
  type StagedState,
  type StateResolver,
} from "../../ports/event_store.ts";
import type { FederationTransport } from "../../ports/federation_transport.ts";
import { authEventIdsNeeded, authoriseByAuthEvents } from "./auth_events.ts";
import { AppendBatch } from "./append_batch.ts";
import { applyContentHash } from "./content_hash.ts";
import type { FetchedEventSinks } from "./fetched_events.ts";
import { checkPduFormat } from "./format.ts";
import { gatherAuthEvents } from "./missing_auth_events.ts";
import { fetchMissingEvents, stateAcrossGap } from "./missing_prev_events.ts";
import { remoteEventSource } from "./remote_events.ts";
import { checkSignatures, type SignatureVerifier } from "./signatures.ts";
import type { HeldEvent, PduInput, PduInputOptions, PduOutcome } from "./types.ts";

export type { HeldEvent, PduInput, PduInputOptions, PduOutcome } from "./types.ts";

/** What the handler is built from. */
export interface PduInputDeps {
  store: EventStore;
  /** Requests to the server that sent a PDU, for what the PDU needs (auth events, gaps). */
  transport: FederationTransport;
  /** Step 2: `keyRingVerifier(keyRing)` in production. */
  verifySignatures: SignatureVerifier;
  /** State resolution, for the state before an event whose prev events disagree. */
  resolver: StateResolver;
  /** The hooks local sends run (push notifications, ...), run for accepted remote events too. */
  eventHooks?: LocalEventHook[];
}

/** How one handling may reach out for missing prev events, and the hooks it adds. */
interface GapMode {
  /** Ask the sender for the events in between (not for events that came from such a walk). */
  askForMissingEvents: boolean;
  backfill: boolean;
  /** PduInputOptions.hooks: for the PDU handed in, never for the events a gap walk fetches. */
  extraHooks: readonly LocalEventHook[];
  /**
   * The states at missing prev events the events of one get_missing_events walk may still have
   * fetched, shared by them (undefined: only the event's own prev events bound it).
   */
  gapStates?: { left: number };
}

/**
 * States at missing prev events (`/state_ids` and its events, some 50 requests at most each)
 * one pushed PDU's get_missing_events walk may fetch: an honest walk lacks only what precedes
 * its oldest event, while ten walked events citing 20 unknown prev events each would cost 200.
 */
export const MAX_GAP_STATES_PER_WALK = 5;

/** A PDU through its checks, its append added to the batch: `outcome` settles once committed. */
interface Checked {
  outcome: Promise<PduOutcome>;
}

const settled = (outcome: PduOutcome): Checked => ({ outcome: Promise.resolve(outcome) });

/** The handler of PDUs from other servers (see the module comment for its steps). */
export class FederationPduInput implements PduInput {
  constructor(private readonly deps: PduInputDeps) {}

  /** See PduInput.handle. */
  async handle(
    origin: string,
    roomId: string,
    pdu: unknown,
    options: PduInputOptions = {},
  ): Promise<PduOutcome> {
    const batch = new AppendBatch(true);
    const checked = await this.#check(origin, roomId, pdu, modeOf(options), batch);
    return await checked.outcome;
  }

  /**
   * See PduInput.handleAll: the PDUs are checked one after another and their appends queued
   * together (append_batch.ts), so consecutive events of a room share commits.
   */
  async handleAll(
    origin: string,
    roomId: string,
    pdus: readonly unknown[],
    options: PduInputOptions = {},
  ): Promise<PduOutcome[]> {
    const batch = new AppendBatch(false);
    const outcomes: Promise<PduOutcome>[] = [];
    // Storage failing for one PDU fails only its result (the sender sees it, as Synapse does).
    const failed = (pdu: unknown) => (error: unknown): PduOutcome => {
      console.error("federation: handling a PDU failed", roomId, error);
      return { eventId: carriedEventId(pdu), error: "internal error handling the event" };
    };
    const head = await this.deps.store.roomHead(roomId);
    for (const pdu of pdus) {
      try {
        const checked = await this.#check(origin, roomId, pdu, modeOf(options), batch, head);
        outcomes.push(checked.outcome.catch(failed(pdu)));
      } catch (error) {
        outcomes.push(Promise.resolve(failed(pdu)(error)));
      }
    }
    batch.flush();
    return await Promise.all(outcomes);
  }

  async #check(
    origin: string,
    roomId: string,
    raw: unknown,
    mode: GapMode,
    batch: AppendBatch,
    knownHead?: RoomHeadView | null,
  ): Promise<Checked> {
    const { store } = this.deps;
    // The head gives the room's version (fixed) and, for a gap, a first guess at its
    // extremities (read again before use): one read serves a whole batch.
    const head = knownHead ?? await store.roomHead(roomId);
    if (!head) return settled({ eventId: "", error: `this server is not in room ${roomId}` });
    const version = roomVersion(head.roomVersion);
    if (!version) {
      return settled({ eventId: "", error: `unsupported room version ${head.roomVersion}` });
    }

    // 1. Format and size.
    const format = checkPduFormat(raw, roomId, version);
    if (!format.ok) return settled({ eventId: format.eventId, error: format.reason });
    const { eventId } = format.value;
    const queued = batch.outcome(eventId);
    if (queued) return { outcome: queued };
    // One read for the event itself, its prev events and its auth events (redaction in step 3
    // keeps both lists); it answers the common case of an event resting on what we hold.
    const needed = authEventIdsNeeded(format.value.event, version);
    const lookedUp = new Set([eventId, ...format.value.event.prev_events, ...needed]);
    const found = await store.findEvents([...lookedUp]);
    const known = found.get(eventId);
    if (known && !known.outlier) return settled(outcomeOf(eventId, known.status, "already held"));

    // 2. Signatures.
    const signatures = await checkSignatures(format.value.pdu, version, this.deps.verifySignatures);
    if (!signatures.ok) return settled({ eventId, error: signatures.reason });

    // 3. Content hash: a mismatch redacts the event.
    const { pdu } = applyContentHash(format.value.pdu, version);
    const event = toRoomEvent(pdu, eventId, version);

    // Prev events we lack, before any auth check (as Synapse does, so the event lands in the
    // DAG whatever the checks decide): the events in between, else the state across the gap.
    const gap = await this.#closeGap(origin, roomId, version, event, head, mode, batch, found);
    if (!gap.ok) return settled({ eventId, error: gap.reason });

    // 4. Its own auth events, fetching those we lack from the sender. One still queued is
    // waited for: whether it was accepted decides this event.
    const queuedAuth = needed.filter((id) => batch.has(id));
    if (queuedAuth.length > 0) await batch.settle(queuedAuth);
    // The first read still holds unless something was committed or fetched since.
    const prefetched = gap.settled || queuedAuth.length > 0 ? undefined : { lookedUp, found };
    const source = remoteEventSource(this.deps.transport, origin);
    const sinks = this.#sinks(roomId, prefetched);
    const authEvents = await gatherAuthEvents(event, version, sinks, source);
    const unavailable = needed.filter((id) => !authEvents.has(id));
    if (unavailable.length > 0) {
      // Not rejected: a later try, once the sender answers, may find them.
      return settled({ eventId, error: `auth events unavailable: ${unavailable.join(", ")}` });
    }
    const byAuthEvents = authoriseByAuthEvents(event, authEvents, version);
    if (!byAuthEvents.allowed) {
      const outcome = batch.add(
        eventId,
        () =>
          this.#storeRejected(roomId, event, pdu, gap.stateBefore, mode.backfill).then(
            (): PduOutcome => ({ eventId, status: "rejected", error: byAuthEvents.reason }),
          ),
      );
      return { outcome };
    }
    // 5 and 6 in the store's planner, with the hooks' writes when it stays accepted.
    return await this.#append(roomId, version, event, pdu, gap.stateBefore, mode, batch);
  }

  /**
   * Undefined `stateBefore` when every prev event is in the log or queued (after asking the
   * sender for the ones in between, when allowed); else the staged state across the gap.
   */
  async #closeGap(
    origin: string,
    roomId: string,
    version: RoomVersion,
    event: RoomEvent,
    head: RoomHeadView,
    mode: GapMode,
    batch: AppendBatch,
    found: ReadonlyMap<string, FoundEvent>,
  ): Promise<
    { ok: true; stateBefore?: StagedState; settled: boolean } | { ok: false; reason: string }
  > {
    const inLog = (id: string) => isInLog(found.get(id), roomId) || batch.has(id);
    if (event.prev_events.every(inLog)) return { ok: true, settled: false };
    // A real gap: what is queued lands first, so the walk starts from the true extremities.
    await batch.settle();
    let missing = await this.#notInLog(roomId, event.prev_events);
    if (missing.length === 0) return { ok: true, settled: true };
    const source = remoteEventSource(this.deps.transport, origin);
    if (mode.askForMissingEvents) {
      const extremities = (await this.deps.store.roomHead(roomId))?.forwardExtremities ??
        head.forwardExtremities;
      const between = await fetchMissingEvents(source, roomId, extremities, event.event_id);
      const gapStates = { left: MAX_GAP_STATES_PER_WALK };
      for (const pdu of between) {
        // Each is a PDU in its own right; a gap before the oldest one is closed by state.
        const walked = { askForMissingEvents: false, backfill: false, extraHooks: [], gapStates };
        await (await this.#check(origin, roomId, pdu, walked, new AppendBatch(true))).outcome;
      }
      missing = await this.#notInLog(roomId, event.prev_events);
      if (missing.length === 0) return { ok: true, settled: true };
      // Pushed to us, it could become our only view of the room's end: there is no excuse for
      // withholding what it rests on, and the sender's word for the state is not taken (as
      // Synapse refuses). Events pulled by that walk or by backfill take the state instead.
      return {
        ok: false,
        reason: `prev events withheld by the sender: ${missing.join(", ")}`,
      };
    }
    if (mode.gapStates) {
      if (missing.length > mode.gapStates.left) {
        return { ok: false, reason: `too many prev events missing: ${missing.join(", ")}` };
      }
      mode.gapStates.left -= missing.length;
    }
    const across = await stateAcrossGap(
      roomId,
      version,
      { held: event.prev_events.filter((id) => !missing.includes(id)), missing },
      {
        sinks: this.#sinks(roomId),
        source,
        stateAfter: (id) => this.deps.store.stateAtEvent(id, "after"),
        resolve: (v, stateMaps) => this.#resolve(v, stateMaps),
      },
    );
    if (!across.ok) return across;
    const stateBefore = await this.deps.store.stageState(roomId, version.id, across.state);
    return { ok: true, stateBefore, settled: true };
  }

  /** Prepare the hooks' writes, then add the append to the batch. */
  async #append(
    roomId: string,
    version: RoomVersion,
    event: RoomEvent,
    pdu: Pdu,
    stateBefore: StagedState | undefined,
    mode: GapMode,
    batch: AppendBatch,
  ): Promise<Checked> {
    const { backfill } = mode;
    const hooked: PreparedEventWrites[] = [];
    if (!backfill) {
      for (const hook of [...(this.deps.eventHooks ?? []), ...mode.extraHooks]) {
        const prepared = await hook.prepare({ eventId: event.event_id, roomId, pdu }, version);
        if (prepared) hooked.push(prepared);
      }
    }
    const accepted = (appended: AppendedEvent) =>
      appended.status === "accepted" && !appended.duplicate;
    const commit = async (): Promise<PduOutcome> => {
      let result;
      try {
        result = await this.deps.store.append({
          roomId,
          backfill,
          events: [{
            eventId: event.event_id,
            pdu,
            status: "accepted",
            checkState: true,
            ...(stateBefore ? { stateBefore } : {}),
          }],
          extraMutations: ([appended]) =>
            accepted(appended) ? hooked.flatMap((h) => h.writes(appended)) : [],
        });
      } catch (error) {
        if (error instanceof MissingPrevEvents) {
          return { eventId: event.event_id, error: error.message };
        }
        throw error;
      }
      const appended = result.events[0];
      if (accepted(appended)) {
        await Promise.all(hooked.map((h) =>
          h.afterCommit?.(appended).catch((error) => {
            console.error("event hook afterCommit failed", event.event_id, error);
          })
        ));
      }
      return outcomeOf(event.event_id, appended.status, "failed the auth rules");
    };
    return { outcome: batch.add(event.event_id, commit) };
  }

  /**
   * An event failing step 4 is kept, marked rejected, so it is never fetched and checked
   * again: in the log (the DAG stays whole; rejected events are never state or extremities),
   * or as an outlier when its prev events could not be placed.
   */
  async #storeRejected(
    roomId: string,
    event: RoomEvent,
    pdu: Pdu,
    stateBefore: StagedState | undefined,
    backfill: boolean,
  ): Promise<void> {
    const rejected = { eventId: event.event_id, pdu, status: "rejected" as const };
    try {
      await this.deps.store.append({
        roomId,
        backfill,
        events: [stateBefore ? { ...rejected, stateBefore } : rejected],
      });
    } catch (error) {
      if (!(error instanceof MissingPrevEvents)) throw error;
      await this.deps.store.storeOutliers(roomId, [rejected]);
    }
  }

  /** The IDs among `ids` that are not events of `roomId`'s log (outliers do not count). */
  async #notInLog(roomId: string, ids: readonly string[]): Promise<string[]> {
    const found = await this.deps.store.findEvents(ids);
    return ids.filter((id) => !isInLog(found.get(id), roomId));
  }

  /**
   * Look-ups and writes for fetched events; `prefetched` answers look-ups of IDs it covers
   * (a read made moments ago that nothing has since changed).
   */
  #sinks(
    roomId: string,
    prefetched?: { lookedUp: ReadonlySet<string>; found: ReadonlyMap<string, FoundEvent> },
  ): FetchedEventSinks {
    const { store } = this.deps;
    return {
      verify: this.deps.verifySignatures,
      held: async (ids) => {
        const found = prefetched && ids.every((id) => prefetched.lookedUp.has(id))
          ? prefetched.found
          : await store.findEvents(ids);
        const held = new Map<string, HeldEvent>();
        // Events of other rooms too: the auth rules reject an event resting on one, and a
        // rejection is final where "unavailable" would have the sender retry forever.
        for (const id of ids) {
          const e = found.get(id);
          if (e) held.set(id, { eventId: id, pdu: e.pdu, status: e.status });
        }
        return held;
      },
      storeOutliers: (events) =>
        store.storeOutliers(
          roomId,
          events.map((e) => ({ eventId: e.eventId, pdu: e.pdu, status: e.status })),
        ),
    };
  }

  async #resolve(version: RoomVersion, stateMaps: StateMap[]): Promise<StateMap> {
    const { store } = this.deps;
    const statuses = new Map<string, string>();
    return await this.deps.resolver({
      version,
      stateMaps,
      getEvent: async (id) => {
        const found = (await store.findEvents([id])).get(id);
        if (!found) return undefined;
        statuses.set(id, found.status);
        return toRoomEvent(found.pdu, id, version);
      },
      isRejected: (id) => statuses.get(id) === "rejected",
    });
  }
}

/**
 * Whether an event is in `roomId`'s log: an outlier is not, nor is an event of another room
 * (a prev event there must not stitch two rooms' histories together).
 */
function isInLog(event: FoundEvent | undefined, roomId: string): boolean {
  return event !== undefined && !event.outlier && event.roomId === roomId;
}

/** How `options` let a handling reach out for missing prev events. */
function modeOf(options: PduInputOptions): GapMode {
  const backfill = options.backfill === true;
  return { askForMissingEvents: !backfill, backfill, extraHooks: options.hooks ?? [] };
}

/** The event ID a PDU carries (rooms v1/v2), or "" when it carries none. */
function carriedEventId(pdu: unknown): string {
  const id = (pdu as { event_id?: unknown } | null)?.event_id;
  return typeof id === "string" ? id : "";
}

function outcomeOf(eventId: string, status: PduOutcome["status"], why: string): PduOutcome {
  if (status === "accepted") return { eventId, status };
  return {
    eventId,
    status,
    error: status === "soft_failed" ? `soft-failed: ${why}` : `rejected: ${why}`,
  };
}
