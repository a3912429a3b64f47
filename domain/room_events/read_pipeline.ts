/**
 * The one way room events leave the server towards a client. Every reader (/sync in all its
 * sections, /messages, /context, /event, /state, /members, /joined_members, /notifications)
 * hands the stored events it chose to `ReadPipeline.readRoom`, which runs, in this order:
 *
 * 1. **History visibility** for the requesting user (client-server spec, "Room History
 *    Visibility"; the pure rule is domain/history_visibility.ts). First, because nothing about
 *    an event the user may not see may leak through the later stages (not even that it exists).
 * 2. **Redaction**: an event an accepted redaction applies to is replaced by its redacted form
 *    (domain/redaction.ts, per room version) before anything reads its content: formats,
 *    filters (`contains_url`) and `event_fields` then only ever see what is left. So is an
 *    event whose sender was erased (deactivated with `erase`, read from the account store on
 *    every request) for a reader who was not joined when it was sent, as Synapse's
 *    `filter_events_for_client` does: only the room's members at the time keep seeing what an
 *    erased user said. Stage 1 tells which events those are, so a joined reader's usual
 *    timeline (after their join) costs no read. A redaction event that does not apply (its
 *    target unknown or rejected, a create event, in another room, or not the sender's to
 *    redact) is withheld: dropped like an event the reader may not see, as Synapse withholds
 *    it, so it neither redacts nor shows anywhere (applied_redactions.ts). Its target arriving
 *    later makes it show: nothing about it is stored.
 * 3. **Ignored users** (`m.ignored_user_list` of the reader, read from account data on every
 *    request so no process serves a stale list): their non-state events are dropped; state
 *    events stay, as the spec's "Ignoring Users" module and Synapse keep them.
 * 4. **Format**: the client format (`unsigned.transaction_id` for the sending device,
 *    `prev_content`, `redacted_because` and `redacted_by`), or the PDU itself for `event_format: federation`,
 *    redacted as stage 2 decided. Readers that ask for them get bundled aggregations
 *    (`unsigned["m.relations"]`: edits, threads, references; relation_aggregations.ts) on the
 *    timeline events kept, computed from children that went through this same pipeline for
 *    the same reader, so nothing the reader may not see is bundled or counted.
 * 5. **Filter**: the room event filter (types, senders, `contains_url`, ...) and the filter's
 *    `event_fields`, last, because they only choose among what the user may see. The room
 *    event filter reads the redacted event, never a formatted field, so it is decided before
 *    formatting (nothing is formatted to be thrown away); `event_fields` picks from the
 *    formatted event.
 *
 * Invites and knocks leave through `strippedState`: an invite from an ignored user is not
 * delivered, and the stripped events are redacted like any other.
 *
 * Stage 1 is history_visibility_filter.ts, stage 2 applied_redactions.ts, and `event_fields`
 * event_fields.ts; this module runs them in order and does the rest.
 *
 * Synapse funnels every read through one function, `filter_events_for_client`; this is ours.
 * It is a required constructor dependency of every reader, so a reader cannot forget a stage.
 *
 * Another server reads through `readForServer` (the federation reads: /event, /state,
 * /backfill, /get_missing_events, /event_auth), the same stages for a server reader:
 * 1. history visibility for the server's users (domain/federation/server_visibility.ts, after
 *    Synapse's `filter_events_for_server`); 2. redaction, and erased senders' events redacted for
 *    every server, and in timeline reads (/event, /backfill, /get_missing_events) redaction
 *    events that do not apply withheld, as from clients (Synapse's `get_events_as_list` withholds
 *    them from its backfill and missing-events answers too); 3. no ignore lists (servers have
 *    none); 4. the PDU format; 5. no filters. Unlike a client, a server is given what it may
 *    not see pruned rather than dropped (servers need the DAG's shape), as Synapse does.
 */
import { type ClientEvent, toClientEvent, toStrippedStateEvent } from "../protocol/client_event.ts";
import { matchesRoomEventFilter, type RoomEventFilter } from "../protocol/event_filter.ts";
import { type StateKey, stateKey } from "../protocol/events.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { AccountDataStore } from "../ports/account_data_store.ts";
import type { AccountStore } from "../ports/account_store.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import type { TransactionStore } from "../ports/transaction_store.ts";
import { redactEvent } from "../protocol/redaction.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import { AppliedRedactions } from "./applied_redactions.ts";
import { pickFields } from "./event_fields.ts";
import { HistoryVisibilityFilter } from "./history_visibility_filter.ts";
import type { RelationReader } from "../ports/relation_store.ts";
import { type PipeEvents, RelationAggregator } from "./relation_aggregations.ts";
import { type ServerReadEvent, ServerVisibility } from "../federation/server_visibility.ts";

/** The account data type holding the users a user ignores. */
export const IGNORED_USER_LIST = "m.ignored_user_list";

/** Stripped state shown with an invite or knock (MSC4311 adds the create event). */
const STRIPPED_TYPES = [
  "m.room.create",
  "m.room.join_rules",
  "m.room.name",
  "m.room.avatar",
  "m.room.canonical_alias",
  "m.room.encryption",
  "m.room.topic",
];

/** What the pipeline reads. */
export interface ReadPipelineDeps {
  store: EventReader;
  /** The reader's `m.ignored_user_list`. */
  accountData: Pick<AccountDataStore, "get">;
  transactions: TransactionStore;
  now: () => number;
  /** This server's name: our users' redactions apply only to their own events or by level. */
  serverName: string;
  /** The relation projections bundled aggregations are read from. */
  relations: RelationReader;
  /** Erased users (stage 2), read on every request: processes share the store. */
  erasure: Pick<AccountStore, "erasedAmong">;
}

/** Who reads. */
export interface PipelineReader {
  userId: string;
  /** The reading device: its own sends carry `unsigned.transaction_id`. */
  deviceId?: string;
}

/** The users a reader ignores (stage 3); read once per request with `ignoredUsers`. */
export type IgnoredUsers = ReadonlySet<string>;

/** One room's read: who reads, how to format and filter. */
export interface RoomRead {
  reader: PipelineReader;
  roomId: string;
  version: RoomVersion;
  /**
   * The reader's membership event as of the read. Sync passes the one it placed at its
   * barrier; absent, the pipeline reads the current one (null: the user never had one).
   */
  membership?: StoredEvent | null;
  /**
   * `event_format` of a sync filter; client by default. `client_v1` is the legacy endpoints'
   * format (/events, /initialSync; Synapse's `format_event_for_client_v1`): the client format
   * plus `user_id` (the sender) and `age`, `prev_content`, `redacted_because` at the top level.
   */
  format?: "client" | "federation" | "client_v1";
  /** Room event filter for the timeline events. */
  filter?: RoomEventFilter;
  /** Room event filter for the state events. */
  stateFilter?: RoomEventFilter;
  /** The sync filter's `event_fields`. */
  eventFields?: readonly string[];
  /** Attach `unsigned.prev_content` to timeline state events (a state read per state event). */
  prevContent?: boolean;
  /** The reader's ignore list when already read (sync reads it once for every room). */
  ignored?: IgnoredUsers;
  /**
   * Bundle aggregations of child events into the client format's timeline events (`true`), or
   * edits alone (`"edits"`, for events bundled into others).
   */
  aggregations?: boolean | "edits";
  /**
   * Put out non-state events of ignored users redacted instead of dropping them (/threads shows
   * an ignored user's thread root so, as the spec asks).
   */
  redactIgnored?: boolean;
}

/** The events of one room's read. */
export interface RoomReadInput {
  /** Timeline events, oldest first: each is checked against history visibility. */
  timeline?: readonly StoredEvent[];
  /**
   * State events from a state snapshot (current state, or as of the reader's leave), or a
   * function choosing them once the visible timeline is known (sync's state section starts
   * where the visible timeline does). Shown when the reader was joined at the snapshot (or the
   * room is world-readable); otherwise each must pass history visibility like a timeline event.
   */
  state?: readonly StoredEvent[] | ((visibleTimeline: StoredEvent[]) => Promise<StoredEvent[]>);
}

/** What leaves the pipeline for one room. */
export interface RoomReadResult {
  /** Timeline events in the requested format, after every stage. */
  timeline: JsonObject[];
  /** State events in the requested format, after every stage. */
  state: JsonObject[];
  /** The stored timeline events that made it out, in order. */
  timelineKept: StoredEvent[];
  /**
   * The stored timeline events the reader may see (stage 1, withheld redactions left out),
   * whatever the later stages did.
   */
  timelineVisible: StoredEvent[];
}

/** The read pipeline; see the module comment for its stages and their order. */
export class ReadPipeline {
  /** Over the event store, account data (ignore lists) and transaction records. */
  constructor(protected readonly deps: ReadPipelineDeps) {
    this.#visibility = new HistoryVisibilityFilter(deps.store);
    this.#redactions = new AppliedRedactions(deps);
    this.#aggregator = new RelationAggregator(deps);
    this.#serverVisibility = new ServerVisibility(deps.store);
  }

  /** Stage 1 for server readers. */
  readonly #serverVisibility: ServerVisibility;

  /** Bundled aggregations, in stage 4. */
  readonly #aggregator: RelationAggregator;

  /** Stage 1. */
  readonly #visibility: HistoryVisibilityFilter;
  /** Stage 2. */
  readonly #redactions: AppliedRedactions;

  /** The reader's ignore list, from account data (never cached: processes share the store). */
  async ignoredUsers(userId: string): Promise<IgnoredUsers> {
    const content = await this.deps.accountData.get(userId, null, IGNORED_USER_LIST);
    const map = content?.ignored_users;
    return new Set(isJsonObject(map) ? Object.keys(map).filter((u) => u !== userId) : []);
  }

  /** The user's current membership event in the room; null when they never had one. */
  membershipOf(userId: string, roomId: string): Promise<StoredEvent | null> {
    return this.#visibility.membershipOf(userId, roomId);
  }

  /** Whether the room's current history visibility is world_readable. */
  worldReadable(roomId: string): Promise<boolean> {
    return this.#visibility.worldReadable(roomId);
  }

  /** Whether the user was joined right before this leave or ban (a former member). */
  wasJoinedBefore(membership: StoredEvent): Promise<boolean> {
    return this.#visibility.wasJoinedBefore(membership);
  }

  /** Run one room's events through every stage, in order. */
  async readRoom(read: RoomRead, input: RoomReadInput): Promise<RoomReadResult> {
    const membership = read.membership !== undefined
      ? read.membership
      : await this.membershipOf(read.reader.userId, read.roomId);
    const ignoredPromise = read.ignored
      ? Promise.resolve(read.ignored)
      : this.ignoredUsers(read.reader.userId);
    // Awaited below; marked handled so a failing visibility read cannot leave it unhandled.
    ignoredPromise.catch(() => {});
    // 1. History visibility, and (stage 2's rule, decided here so that no later stage nor a
    // caller sees them) redaction events withheld because they do not apply: independent reads.
    const [{ visible, unjoined }, withheld] = await Promise.all([
      this.#visibility.visibleTimeline(read.reader.userId, input.timeline ?? [], membership),
      this.#redactions.withheld(input.timeline ?? [], read.version),
    ]);
    const timelineVisible = withheld.size === 0
      ? visible
      : visible.filter((e) => !withheld.has(e.eventId));
    const stateIn = typeof input.state === "function"
      ? await input.state(timelineVisible)
      : input.state ?? [];
    const stateVisible = await this.#visibility.visibleState(
      read.reader.userId,
      read.roomId,
      stateIn,
      membership,
    );
    // 2. Redaction (one lookup for the room's timeline and state together). What stage 4 will
    // read (transaction IDs, prev_content) is fetched beside it: independent reads, one round
    // trip instead of two on the hot path; stage 4 still formats from stage 2's decision.
    // Erased senders: a set of event IDs put out redacted without a redaction event ("pruned"),
    // which stage 3 adds ignored users' events to when they are shown redacted.
    const all = [...timelineVisible, ...stateVisible];
    const [redactions, extras, pruned] = await Promise.all([
      this.#redactions.of(read.roomId, all, read.version),
      this.#formatExtras(read, all, timelineVisible),
      this.#erasedForReader(timelineVisible, unjoined),
    ]);
    // 3. Ignored users: their non-state events are not sent (or sent redacted, when asked).
    const ignored = await ignoredPromise;
    const ignoredRedacted = new Set<string>();
    if (read.redactIgnored) {
      for (const e of timelineVisible) {
        if (e.pdu.state_key === undefined && ignored.has(e.pdu.sender)) {
          ignoredRedacted.add(e.eventId);
          pruned.add(e.eventId);
        }
      }
    }
    const redacted = (e: StoredEvent): StoredEvent =>
      redactions.has(e.eventId) || pruned.has(e.eventId)
        ? { ...e, pdu: redactEvent(e.pdu, read.version) }
        : e;
    const notIgnored = (e: StoredEvent) =>
      e.pdu.state_key !== undefined || !ignored.has(e.pdu.sender) ||
      ignoredRedacted.has(e.eventId);
    // 5's room event filter decides on the redacted event; it runs before formatting here only
    // so nothing is formatted to be thrown away (it reads no formatted field).
    const timelineKept = timelineVisible.filter((e) =>
      notIgnored(e) &&
      matchesRoomEventFilter(read.filter ?? {}, { ...redacted(e).pdu, room_id: read.roomId })
    );
    const stateKept = stateVisible.filter((e) =>
      notIgnored(e) &&
      matchesRoomEventFilter(read.stateFilter ?? {}, { ...redacted(e).pdu, room_id: read.roomId })
    );
    // 4. Format, with bundled aggregations when asked.
    const formatted = this.#format(read, timelineKept, stateKept, redactions, extras, pruned);
    if (read.aggregations && read.format !== "federation" && timelineKept.length > 0) {
      await this.#bundle(read, membership, ignored, timelineKept, formatted, redactions, pruned);
    }
    // 5. event_fields.
    const fields = read.eventFields;
    const pick = (events: JsonObject[]) =>
      fields === undefined ? events : events.map((e) => pickFields(e, fields));
    return {
      timeline: pick(formatted.slice(0, timelineKept.length)),
      state: pick(formatted.slice(timelineKept.length)),
      timelineKept,
      timelineVisible,
    };
  }

  /** Whether a remote server may read the room: joined now, or the room is world-readable. */
  serverMayReadRoom(roomId: string, serverName: string): Promise<boolean> {
    return this.#serverVisibility.mayReadRoom(roomId, serverName);
  }

  /** Stage 1 alone for a server reader: the events it may not see by history visibility. */
  serverHiddenEvents(
    serverName: string,
    events: readonly ServerReadEvent[],
  ): Promise<Set<string>> {
    return this.#serverVisibility.hiddenFrom(serverName, events);
  }

  /**
   * One room's events for a remote server, as PDUs in the order given: each the server may not
   * see (history visibility), each an accepted redaction applies to, and each sent by an erased
   * local user is pruned to its redacted form (see the module comment); a redaction event that
   * does not apply is left out (withheld, as from clients: it would tell the server to redact
   * what we keep showing). Outliers count as `shared` history. `whole`: a room state or auth
   * chain, which a server in the room needs whole to authorise events (as a joined client sees
   * the current state): redactions alone apply, and nothing is left out (a redaction is never
   * state nor an auth event, and a state event is served as the state names it).
   */
  async readForServer(
    read: { serverName: string; roomId: string; version: RoomVersion; whole?: boolean },
    events: readonly ServerReadEvent[],
  ): Promise<JsonObject[]> {
    if (events.length === 0) return [];
    const suffix = `:${this.deps.serverName}`;
    const localSenders = read.whole
      ? []
      : [...new Set(events.map((e) => e.pdu.sender))].filter((s) => s.endsWith(suffix));
    // AppliedRedactions reads only the ID, PDU and status of each event, which outliers have too.
    const stored = events as readonly StoredEvent[];
    // 1 and 2 read independently: one round trip instead of two.
    const [hidden, redactions, erased, withheld] = await Promise.all([
      read.whole
        ? Promise.resolve(new Set<string>())
        : this.#serverVisibility.hiddenFrom(read.serverName, events),
      this.#redactions.of(read.roomId, stored, read.version),
      localSenders.length > 0
        ? this.deps.erasure.erasedAmong(localSenders)
        : Promise.resolve(new Set<string>()),
      // Only non-state events: whoever calls, a state snapshot or an auth chain (state events
      // all) is never cut short, not even by a state event that calls itself a redaction.
      read.whole ? Promise.resolve(new Set<string>()) : this.#redactions.withheld(
        stored.filter((e) => e.pdu.state_key === undefined),
        read.version,
      ),
    ]);
    const kept = withheld.size === 0 ? events : events.filter((e) => !withheld.has(e.eventId));
    // 4. The PDU as sent, or its redacted form.
    return kept.map((event) => {
      const prune = hidden.has(event.eventId) || redactions.has(event.eventId) ||
        erased.has(event.pdu.sender);
      const pdu = prune ? redactEvent(event.pdu, read.version) : event.pdu;
      return pdu as unknown as JsonObject;
    });
  }

  /**
   * Client-format events of one room (no `event_format` or `event_fields`): /messages,
   * /context, /event, /state, /members and /notifications.
   */
  async readClientEvents(
    read: Omit<RoomRead, "format" | "eventFields">,
    input: RoomReadInput,
  ): Promise<{ timeline: ClientEvent[]; state: ClientEvent[]; timelineKept: StoredEvent[] }> {
    const out = await this.readRoom(read, input);
    return {
      timeline: out.timeline as unknown as ClientEvent[],
      state: out.state as unknown as ClientEvent[],
      timelineKept: out.timelineKept,
    };
  }

  /**
   * The `invite_state`/`knock_state` of an invite or knock, or undefined when it is not to be
   * delivered: invites from ignored users are not (spec, "Ignoring Users"). Stripped state is
   * what the inviter's server chose to show anyone invited, so history visibility does not
   * apply; a federated invite carries it in `unsigned`.
   */
  async strippedState(
    membership: StoredEvent,
    ignored: IgnoredUsers,
    version: RoomVersion | undefined,
  ): Promise<JsonObject[] | undefined> {
    if (membership.pdu.content.membership === "invite" && ignored.has(membership.pdu.sender)) {
      return undefined;
    }
    const carried = membership.pdu.unsigned?.invite_room_state ??
      membership.pdu.unsigned?.knock_room_state;
    const out: JsonObject[] = Array.isArray(carried) ? carried.filter(isJsonObject) : [];
    if (out.length === 0) {
      const before = await this.deps.store.stateAtEvent(membership.eventId, "before");
      if (before) {
        const keys: StateKey[] = STRIPPED_TYPES.map((type) => stateKey(type, ""));
        keys.push(stateKey("m.room.member", membership.pdu.sender));
        const ids = keys.flatMap((key) => before.get(key) ?? []);
        const events = await this.deps.store.getEvents(ids);
        const redactions = version
          ? await this.#redactions.of(membership.roomId, [...events.values()], version)
          : new Map<string, StoredEvent>();
        for (const id of ids) {
          const event = events.get(id);
          if (!event || event.eventId === membership.eventId) continue;
          const pdu = version && redactions.has(id) ? redactEvent(event.pdu, version) : event.pdu;
          out.push(toStrippedStateEvent(pdu));
        }
      }
    }
    out.push(toStrippedStateEvent(membership.pdu));
    return out;
  }

  /**
   * Attach `unsigned["m.relations"]` to the formatted timeline events (the first
   * `timeline.length` of `formatted`). Children are read through this pipeline for the same
   * reader, without the reader's filter (it chose the parents, not their children).
   */
  async #bundle(
    read: RoomRead,
    membership: StoredEvent | null,
    ignored: IgnoredUsers,
    timeline: readonly StoredEvent[],
    formatted: JsonObject[],
    redactions: Map<string, StoredEvent>,
    pruned: ReadonlySet<string>,
  ): Promise<void> {
    const pipe: PipeEvents = async (events, nested) => {
      const out = new Map<string, JsonObject>();
      if (events.length === 0) return out;
      const result = await this.readRoom({
        reader: read.reader,
        roomId: read.roomId,
        version: read.version,
        membership,
        ignored,
        aggregations: nested === "edits" ? "edits" : false,
      }, { timeline: events });
      result.timelineKept.forEach((e, i) => out.set(e.eventId, result.timeline[i]));
      return out;
    };
    const bundles = await this.#aggregator.bundles(
      { userId: read.reader.userId, roomId: read.roomId, membership, ignored },
      timeline,
      new Set([...redactions.keys(), ...pruned]),
      pipe,
      read.aggregations === "edits" ? "edits" : undefined,
    );
    timeline.forEach((event, i) => {
      const bundle = bundles.get(event.eventId);
      if (!bundle) return;
      const unsigned = formatted[i].unsigned;
      formatted[i].unsigned = {
        ...(isJsonObject(unsigned) ? unsigned : {}),
        "m.relations": bundle,
      };
    });
  }

  /**
   * Stripped state of a room the reader may preview without reading its history (the space
   * hierarchy's children and room summaries): redactions apply, history visibility does not,
   * because the caller decided the room is previewable by the spec's rules for those endpoints
   * (joined, invited, public or knockable, world-readable, or restricted to a room the reader is
   * in), as Synapse's room_summary handler does. Each keeps its `origin_server_ts`.
   */
  async previewState(
    roomId: string,
    version: RoomVersion,
    events: readonly StoredEvent[],
  ): Promise<JsonObject[]> {
    const redactions = await this.#redactions.of(roomId, events, version);
    return events.map((event) => {
      const pdu = redactions.has(event.eventId) ? redactEvent(event.pdu, version) : event.pdu;
      return { ...toStrippedStateEvent(pdu), origin_server_ts: pdu.origin_server_ts };
    });
  }

  /**
   * Stage 2 for erased senders: the visible timeline events the reader was not joined at
   * (stage 1's `unjoined`) whose sender is a local user erased at deactivation. Only local
   * accounts can be erased, so remote senders cost no read; nothing to check costs none.
   */
  async #erasedForReader(
    timeline: readonly StoredEvent[],
    unjoined: ReadonlySet<string>,
  ): Promise<Set<string>> {
    const out = new Set<string>();
    if (unjoined.size === 0) return out;
    const suffix = `:${this.deps.serverName}`;
    const candidates = timeline.filter((e) =>
      unjoined.has(e.eventId) && e.pdu.sender.endsWith(suffix)
    );
    if (candidates.length === 0) return out;
    const erased = await this.deps.erasure.erasedAmong(candidates.map((e) => e.pdu.sender));
    for (const e of candidates) if (erased.has(e.pdu.sender)) out.add(e.eventId);
    return out;
  }

  /** What the client format attaches: the device's transaction IDs and `prev_content`. */
  async #formatExtras(
    read: RoomRead,
    events: readonly StoredEvent[],
    timeline: readonly StoredEvent[],
  ): Promise<FormatExtras> {
    if (read.format === "federation" || events.length === 0) {
      return { txnIds: new Map(), prevContents: new Map() };
    }
    const deviceId = read.reader.deviceId;
    const [txnIds, prevContents] = await Promise.all([
      deviceId === undefined
        ? Promise.resolve(new Map<string, string>())
        : this.deps.transactions.transactionIdsFor(events.map((e) => e.eventId), deviceId),
      read.prevContent
        ? this.#prevContents(read.roomId, read.version, timeline)
        : Promise.resolve(new Map<string, PrevState>()),
    ]);
    return { txnIds, prevContents };
  }

  /** Stage 4: the requested format, redactions as stage 2 found them. */
  #format(
    read: RoomRead,
    timeline: readonly StoredEvent[],
    state: readonly StoredEvent[],
    redactions: Map<string, StoredEvent>,
    { txnIds, prevContents }: FormatExtras,
    pruned: ReadonlySet<string> = new Set(),
  ): JsonObject[] {
    const { roomId, version } = read;
    const all = [...timeline, ...state];
    if (all.length === 0) return [];
    if (read.format === "federation") {
      return all.map((event) => {
        const pdu = redactions.has(event.eventId) || pruned.has(event.eventId)
          ? redactEvent(event.pdu, version)
          : event.pdu;
        return { ...pdu, event_id: event.eventId } as unknown as JsonObject;
      });
    }
    const now = this.deps.now();
    return all.map((event) => {
      const redaction = redactions.get(event.eventId);
      const redactedBecause = redaction
        ? toClientEvent(redaction.eventId, redaction.pdu, { roomId, version, now })
        : undefined;
      const pdu = redaction || pruned.has(event.eventId)
        ? redactEvent(event.pdu, version)
        : event.pdu;
      const prevKept = !redaction && !pruned.has(event.eventId);
      const prev = prevKept ? prevContents.get(event.eventId) : undefined;
      const client = toClientEvent(event.eventId, pdu, {
        roomId,
        version,
        now,
        transactionId: txnIds.get(event.eventId),
        prevContent: prev?.content,
        prevSender: prev?.sender,
        redactedBecause,
      }) as unknown as JsonObject;
      return read.format === "client_v1" ? toClientV1(client) : client;
    });
  }

  /**
   * The content and sender of the state each state event replaced, when it replaced one;
   * redacted when the replaced event was (its content must not come back as `prev_content`).
   * The sender is `prev_sender`, which matrix-js-sdk reads to find who invited the user.
   */
  async #prevContents(roomId: string, version: RoomVersion, events: readonly StoredEvent[]) {
    const prevIds = new Map<string, string>();
    await Promise.all(events.map(async (event) => {
      if (event.pdu.state_key === undefined) return;
      const before = await this.deps.store.stateAtEvent(event.eventId, "before");
      const prev = before?.get(stateKey(event.pdu.type, event.pdu.state_key));
      if (prev !== undefined) prevIds.set(event.eventId, prev);
    }));
    const out = new Map<string, PrevState>();
    if (prevIds.size === 0) return out;
    const prevEvents = await this.deps.store.getEvents([...prevIds.values()]);
    const redacted = await this.#redactions.of(roomId, [...prevEvents.values()], version);
    for (const [id, prevId] of prevIds) {
      const prev = prevEvents.get(prevId);
      if (!prev) continue;
      const content = redacted.has(prevId)
        ? redactEvent(prev.pdu, version).content
        : prev.pdu.content;
      out.set(id, { content, sender: prev.pdu.sender });
    }
    return out;
  }
}

/** The legacy (r0 and before) client format of a client event: see `RoomRead.format`. */
function toClientV1(event: JsonObject): JsonObject {
  const out: JsonObject = { ...event, user_id: event.sender ?? null };
  const unsigned = isJsonObject(event.unsigned) ? event.unsigned : {};
  for (const key of ["age", "prev_content", "redacted_because"]) {
    if (unsigned[key] !== undefined) out[key] = unsigned[key];
  }
  return out;
}

/** The state a state event replaced: `unsigned.prev_content` and `prev_sender`. */
interface PrevState {
  content: JsonObject;
  sender: string;
}

/** Transaction IDs and replaced states, by event ID, for the client format. */
interface FormatExtras {
  txnIds: Map<string, string>;
  prevContents: Map<string, PrevState>;
}
