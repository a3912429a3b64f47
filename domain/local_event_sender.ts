/**
 * Sending local events: build, hash and sign each one on top of the room's DAG, authorise it
 * with the same rules as a federated event, and append it with its projections.
 *
 * Sends to one room are queued in process and drained in batches: each batch reads the room's
 * head once, chains its events (each one's prev_event is the one before it, so concurrent local
 * sends never fork the DAG), and lands in one commit. A refused event is never written and its
 * caller gets M_FORBIDDEN; the rest of the batch goes on.
 *
 * Several processes may write one room (isolates over one KV). A batch commits only on the head
 * it was built and authorised on; when another process moved that head first, the batch is
 * rebuilt on the new one (fresh state view, fresh prev_events) and every event is authorised
 * again, so a ban or demotion committed elsewhere binds the next commit here, and the DAG stays
 * linear across processes too.
 */
import { authEventKeys } from "./protocol/auth_event_selection.ts";
import { authStateFromEvents, checkEventAuth } from "./protocol/auth_rules.ts";
import { buildEvent, type EventReference } from "./protocol/event_builder.ts";
import { forbidden, MatrixError, notFound, unsupportedRoomVersion } from "./errors.ts";
import { KeyedDrainQueue, type Queued } from "./keyed_drain_queue.ts";
import { checkLocalRedaction } from "./protocol/redaction_auth_rules.ts";
import {
  type Pdu,
  type RoomEvent,
  type StateKey,
  stateKey,
  toRoomEvent,
} from "./protocol/events.ts";

import type { JsonObject } from "./protocol/json.ts";
import { type RoomVersion, roomVersion } from "./protocol/room_versions.ts";
import type { SigningKey } from "./protocol/signing.ts";
import { toStoredRoomEvent } from "./protocol/stored_events.ts";
import {
  type AppendedEvent,
  type AppendResult,
  AppendTooLarge,
  type CommitMutation,
  type EventStore,
  RoomHeadMoved,
} from "./ports/event_store.ts";

const CREATE_KEY = stateKey("m.room.create", "");
/** Rooms whose state view is kept between batches; the least recently used is dropped. */
const CACHED_ROOM_VIEWS = 1024;
/** Timestamps a room creation tries before giving up; each collision costs one append. */
const MAX_CREATE_ATTEMPTS = 32;
/** Times a batch is rebuilt on a head another process moved before its senders get 503. */
const MAX_REBUILDS = 24;

/** One local event to send into an existing room. */
export interface LocalEventRequest {
  roomId: string;
  sender: string;
  type: string;
  stateKey?: string;
  content: JsonObject;
  redacts?: string;
  /** Writes that must land in the same commit (transaction-ID records, outbox entries). */
  extraMutations?: (appended: AppendedEvent) => CommitMutation[];
  /** A further check against the very state the event is authorised on (see StateCondition). */
  condition?: StateCondition;
  /**
   * Another server's signature the event needs before it is stored (an invite of a remote
   * user: the invitee's server signs it over federation): given the built, authorised event,
   * resolve to the same event with the added signatures, or reject to refuse it (nothing is
   * written). Runs outside the room's queue (other sends go on meanwhile); the signed event
   * then comes back through the queue and is authorised again if the room moved on (see
   * `#appendCountersigned`).
   */
  countersign?: (event: { eventId: string; pdu: Pdu }, version: RoomVersion) => Promise<Pdu>;
}

/**
 * A rule of this server's own beyond the auth rules (a guest may join only rooms open to
 * guests), checked against the state the event is authorised and committed on: a state change
 * another process committed first binds it, as it binds the auth rules.
 */
export interface StateCondition {
  /** The state entries the check reads. */
  keys: [type: string, stateKey: string][];
  /** The error refusing the event, or undefined to let it through. */
  refusal(
    content: (type: string, stateKey: string) => JsonObject | undefined,
  ): MatrixError | undefined;
}

/** A sent event: its ID, PDU and place in the log. */
export interface SentEvent {
  eventId: string;
  pdu: Pdu;
  appended: AppendedEvent;
}

/**
 * Work another area adds to every event the sender accepts (push notifications): called after
 * authorisation and before the append; what it returns rides in the event's commit.
 */
export interface LocalEventHook {
  /** Plan the writes for one accepted event; `writes` gets its place once the commit is planned. */
  prepare(
    event: { eventId: string; roomId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<PreparedEventWrites | undefined>;
}

/** A hook's writes for one event. */
export interface PreparedEventWrites {
  /** Mutations for the event's commit (may be called more than once: planning, retries). */
  writes(appended: AppendedEvent): CommitMutation[];
  /** Follow-up work once the event is committed, before its sender is answered. */
  afterCommit?(appended: AppendedEvent): Promise<void>;
  /** How many mutations `writes` returns, so a batch can be split before it outgrows a commit. */
  weight?: number;
}

/** Most hook mutations one append carries (about 110 bytes of key each, within KV's 80 KiB). */
export const HOOK_WRITES_PER_COMMIT = 300;

/**
 * Split a batch into appends that each fit one commit. The store folds whole append requests
 * but never splits one; hooks may add a write per notified member, so their weight bounds each
 * part. Events alone may outgrow a commit too (a dozen near 64 KiB fill its 800 KiB; 64 joins
 * of 255-byte user IDs its 80 KiB of keys): a part the store finds too large is halved.
 */
function splitIntoAppends<T extends { hooked: PreparedEventWrites[] }>(built: T[]): T[][] {
  const parts: T[][] = [];
  let part: T[] = [];
  let weight = 0;
  for (const b of built) {
    const w = b.hooked.reduce((sum, h) => sum + (h.weight ?? 0), 0);
    if (part.length > 0 && weight + w > HOOK_WRITES_PER_COMMIT) {
      parts.push(part);
      part = [];
      weight = 0;
    }
    part.push(b);
    weight += w;
  }
  if (part.length > 0) parts.push(part);
  return parts;
}

/** What the sender is built from. */
export interface LocalEventSenderDeps {
  store: EventStore;
  serverName: string;
  signingKey: SigningKey;
  now?: () => number;
  /** Most events folded into one batch; each costs a handful of commit mutations. */
  maxBatch?: number;
  /** Hooks run for every accepted event (a failing hook refuses the event, writing nothing). */
  eventHooks?: LocalEventHook[];
}

/**
 * An event built and authorised on `builtOn` (a head versionstamp) whose countersignature was
 * awaited outside the queue: it is appended as signed, never rebuilt (the signature covers its
 * prev and auth events).
 */
interface CountersignedEvent {
  countersigned: true;
  request: LocalEventRequest;
  eventId: string;
  pdu: Pdu;
  builtOn: string;
}

type QueueItem = LocalEventRequest | CountersignedEvent;
type Pending = Queued<LocalEventRequest, SentEvent>;

/** Builds, authorises and appends local events, one drain loop per room. */
export class LocalEventSender {
  readonly #deps: LocalEventSenderDeps;
  readonly #queue = new KeyedDrainQueue<QueueItem, SentEvent>(async (roomId, queue) => {
    const taken = queue.splice(0, this.#deps.maxBatch ?? 64);
    const batch: Pending[] = [];
    for (const p of taken) {
      if (!("countersigned" in p.item)) {
        batch.push(p as Pending);
        continue;
      }
      // Each on its own append: its prev events are fixed by the signatures it carries.
      try {
        p.resolve(await this.#appendCountersigned(roomId, p.item));
      } catch (error) {
        p.reject(error);
      }
    }
    if (batch.length === 0) return;
    try {
      await this.#sendWithRebuilds(roomId, batch);
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  });
  /**
   * Each room's state view and DAG tip after our last commit to it. Valid while the room's head
   * still carries that commit's versionstamp: nobody else has appended since (every commit lands
   * on the head its batch was built on, so the view is exactly that head's state), and the next
   * batch can skip re-reading state.
   */
  readonly #views = new Map<string, CachedView>();
  /** The newest create-event timestamp this sender used. */
  #lastCreateTs = 0;

  /** Create a sender over a store, signing as `serverName`. */
  constructor(deps: LocalEventSenderDeps) {
    this.#deps = deps;
  }

  /** Create a room: build and append its m.room.create event, returning the room ID. */
  async createRoom(options: {
    version: string;
    creator: string;
    content?: JsonObject;
    /** Writes for the create event's commit, given the room ID (createRoom's alias record). */
    extraMutations?: (roomId: string) => CommitMutation[];
    /**
     * A room ID from `newRoomId`, for versions whose room IDs the server chooses: an upgrade
     * names the new room in the old one's tombstone before creating it.
     */
    roomId?: string;
  }): Promise<{ roomId: string; event: SentEvent }> {
    const version = roomVersion(options.version);
    if (!version) throw unsupportedRoomVersion(options.version);
    if (options.roomId !== undefined && version.roomIdIsCreateEventHash) {
      throw new Error(`Room version ${version.id} derives its room IDs; none can be chosen`);
    }
    const content: JsonObject = { ...options.content, room_version: version.id };
    if (version.createHasCreatorField) content.creator = options.creator;
    // A v12 room ID is the create event's hash, so two creates by one user in one millisecond
    // would be the same room: timestamps of creates strictly increase in this process, and a
    // create another process already stored (the store reports it as a duplicate) is rebuilt
    // a millisecond later.
    let ts = Math.max(this.#now(), this.#lastCreateTs + 1);
    for (let attempt = 0; attempt < MAX_CREATE_ATTEMPTS; attempt++, ts++) {
      this.#lastCreateTs = Math.max(this.#lastCreateTs, ts);
      const roomId = version.roomIdIsCreateEventHash
        ? undefined
        : options.roomId ?? this.newRoomId();
      const built = await buildEvent({
        version,
        roomId,
        sender: options.creator,
        type: "m.room.create",
        stateKey: "",
        content,
        prevEvents: [],
        currentState: () => undefined,
        serverName: this.#deps.serverName,
        signingKey: this.#deps.signingKey,
        originServerTs: ts,
      });
      const decision = checkEventAuth(built.event, () => undefined, version);
      if (!decision.allowed) throw forbidden(decision.reason);
      const result = await this.#deps.store.append({
        roomId: built.event.room_id,
        roomVersion: version.id,
        events: [{ eventId: built.eventId, pdu: built.pdu, status: "accepted" }],
        extraMutations: options.extraMutations &&
          (() => options.extraMutations!(built.event.room_id)),
      });
      if (result.events[0].duplicate) {
        // A chosen room ID is not swapped for another: its caller has named it already.
        if (options.roomId !== undefined) throw new MatrixError("M_UNKNOWN", 409, "Room exists");
        continue;
      }
      return {
        roomId: built.event.room_id,
        event: { eventId: built.eventId, pdu: built.pdu, appended: result.events[0] },
      };
    }
    throw new MatrixError("M_UNKNOWN", 503, "Could not create a unique room; try again");
  }

  /** Send one event into a room; resolves once it is committed, rejects with M_FORBIDDEN if refused. */
  send(request: LocalEventRequest): Promise<SentEvent> {
    return this.#queue.enqueue(request.roomId, request);
  }

  /**
   * Send a batch; whatever lost its commit to another process's append is rebuilt on the new
   * head and authorised again from scratch, a bounded number of times.
   */
  async #sendWithRebuilds(roomId: string, batch: Pending[]): Promise<void> {
    let waiting = batch;
    for (let attempt = 0; attempt < MAX_REBUILDS; attempt++) {
      // Two processes writing one room in lockstep would keep beating each other: spread out.
      if (attempt >= 2) {
        const ms = Math.random() * Math.min(50, 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, ms));
      }
      waiting = await this.#sendBatch(roomId, waiting);
      if (waiting.length === 0) return;
    }
    const busy = new MatrixError("M_UNKNOWN", 503, "The room is too busy; try again");
    for (const pending of waiting) pending.reject(busy);
  }

  /**
   * Build, authorise and append a batch on the room's head as read now. Every append names the
   * head it was built on; events whose append found that head moved (another process wrote)
   * come back unsent, to be rebuilt and authorised again on the new head.
   */
  async #sendBatch(roomId: string, batch: Pending[]): Promise<Pending[]> {
    const { store } = this.#deps;
    const head = await store.roomHead(roomId);
    if (!head) throw notFound(`Unknown room ${roomId}`);
    const version = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);

    const cached = this.#views.get(roomId);
    this.#views.delete(roomId);
    const reusable = cached?.versionstamp === head.versionstamp;
    const view = reusable ? cached!.view : new RoomStateView(store, roomId, version);
    let prevEvents = reusable ? cached!.prevEvents : await view.references(head.forwardExtremities);
    const built: { pending: Pending; eventId: string; pdu: Pdu; hooked: PreparedEventWrites[] }[] =
      [];
    for (const pending of batch) {
      const request = pending.item;
      try {
        const needed = authEventKeys(
          {
            type: request.type,
            state_key: request.stateKey,
            sender: request.sender,
            content: request.content,
          },
          version,
        );
        await view.load(needed);
        const event = await buildEvent({
          version,
          roomId,
          sender: request.sender,
          type: request.type,
          stateKey: request.stateKey,
          content: request.content,
          redacts: request.redacts,
          prevEvents,
          currentState: (key) => view.entry(key),
          serverName: this.#deps.serverName,
          signingKey: this.#deps.signingKey,
          originServerTs: this.#now(),
        });
        const decision = checkEventAuth(
          event.event,
          authStateFromEvents(view.eventsFor(event.event.auth_events)),
          version,
          { createEvent: view.createEvent() },
        );
        if (!decision.allowed) throw forbidden(decision.reason);
        if (request.condition) {
          const { keys, refusal } = request.condition;
          await view.load(keys.map(([t, k]) => stateKey(t, k)));
          const refused = refusal((t, k) => view.content(stateKey(t, k)));
          if (refused) throw refused;
        }
        // Redacting others' events needs the redact level in the state this event is authorised
        // on (the auth rules leave that to each server for its own users).
        if (event.event.type === "m.room.redaction" && event.event.redacts !== undefined) {
          const target = await store.getEvent(event.event.redacts);
          const refusal = checkLocalRedaction(
            event.event,
            target && target.status !== "rejected"
              ? { roomId: target.roomId, sender: target.pdu.sender, type: target.pdu.type }
              : undefined,
            authStateFromEvents(view.eventsFor(event.event.auth_events)),
            version,
            view.createEvent(),
          );
          if (refusal) throw refusal;
        }
        if (request.countersign) {
          // Another server's signature can take seconds: wait for it outside the queue so the
          // room's other sends go on, then bring the signed event back (nothing written yet).
          this.#countersignOutside(pending, request, event, version, head.versionstamp);
          continue;
        }
        const pdu = event.pdu;
        const hooked = await this.#prepareHooks(roomId, event.eventId, pdu, version);
        view.apply(event.event);
        prevEvents = [{ eventId: event.eventId, depth: event.pdu.depth }];
        built.push({ pending, eventId: event.eventId, pdu, hooked });
      } catch (error) {
        pending.reject(error);
      }
    }
    if (built.length === 0) return [];

    // Each part is one append request, committed in order; a failed part stops the rest, so no
    // later event is stored on top of a missing prev event. Each part must land on the head it
    // was built on: the one read above, then the one the previous part wrote.
    let result: AppendResult | undefined;
    let expectedHead = head.versionstamp;
    const parts = splitIntoAppends(built);
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index];
      let partResult: AppendResult;
      try {
        partResult = await store.append({
          roomId,
          events: part.map((b) => ({
            eventId: b.eventId,
            pdu: b.pdu,
            status: "accepted" as const,
          })),
          extraMutations: (appended) =>
            part.flatMap((b, i) => [
              ...(b.pending.item.extraMutations?.(appended[i]) ?? []),
              ...b.hooked.flatMap((h) => h.writes(appended[i])),
            ]),
          expectedHead,
        });
      } catch (error) {
        // Over one commit's limits (many events near 64 KiB, long user IDs): nothing was
        // written, so it goes in two halves, the first on this part's head.
        if (error instanceof AppendTooLarge && part.length > 1) {
          const half = part.length >> 1;
          parts.splice(index, 1, part.slice(0, half), part.slice(half));
          index--;
          continue;
        }
        if (!(error instanceof RoomHeadMoved)) throw error;
        // Nothing of this part was written; the view and prev events are stale, so drop them.
        return parts.slice(index).flatMap((p) => p.map((b) => b.pending));
      }
      expectedHead = partResult.versionstamp;
      await Promise.all(
        part.flatMap((b, i) =>
          b.hooked.map((h) =>
            h.afterCommit?.(partResult.events[i]).catch((error) => {
              // The event is committed; a lost follow-up costs a notification, not the event.
              console.error("event hook afterCommit failed", b.eventId, error);
            })
          )
        ),
      );
      part.forEach((b, i) =>
        b.pending.resolve({ eventId: b.eventId, pdu: b.pdu, appended: partResult.events[i] })
      );
      result = partResult;
    }
    this.#views.set(roomId, { versionstamp: result!.versionstamp, view, prevEvents });
    if (this.#views.size > CACHED_ROOM_VIEWS) {
      this.#views.delete(this.#views.keys().next().value!);
    }
    return [];
  }

  async #prepareHooks(
    roomId: string,
    eventId: string,
    pdu: Pdu,
    version: RoomVersion,
  ): Promise<PreparedEventWrites[]> {
    const hooked: PreparedEventWrites[] = [];
    for (const hook of this.#deps.eventHooks ?? []) {
      const prepared = await hook.prepare({ eventId, roomId, pdu }, version);
      if (prepared) hooked.push(prepared);
    }
    return hooked;
  }

  /** Await `request`'s countersignature off the queue, then queue the signed event's append. */
  #countersignOutside(
    pending: Pending,
    request: LocalEventRequest,
    event: { eventId: string; pdu: Pdu },
    version: RoomVersion,
    builtOn: string,
  ): void {
    request.countersign!({ eventId: event.eventId, pdu: event.pdu }, version)
      .then((pdu) =>
        this.#queue.enqueue(request.roomId, {
          countersigned: true,
          request,
          eventId: event.eventId,
          pdu,
          builtOn,
        })
      )
      .then(pending.resolve, pending.reject);
  }

  /**
   * Append a countersigned event, in the queue. On the head it was authorised on it lands as
   * built. When the room moved on meanwhile, the same signed event is authorised again against
   * the current state (refused: nothing is written) and appended with the store's `checkState`
   * on that very head, so the store's planner checks it on the state it lands on too. Its prev
   * events then are no longer the room's only tips: the DAG forks for one event, as it does
   * for events of other servers, and the next send cites both tips.
   */
  async #appendCountersigned(roomId: string, signed: CountersignedEvent): Promise<SentEvent> {
    const { store } = this.#deps;
    const request = signed.request;
    for (let attempt = 0; attempt < MAX_REBUILDS; attempt++) {
      const head = await store.roomHead(roomId);
      if (!head) throw notFound(`Unknown room ${roomId}`);
      const version = roomVersion(head.roomVersion);
      if (!version) throw unsupportedRoomVersion(head.roomVersion);
      const moved = head.versionstamp !== signed.builtOn;
      const event = toRoomEvent(signed.pdu, signed.eventId, version);
      if (moved) {
        const view = new RoomStateView(store, roomId, version);
        const needed = authEventKeys(event, version);
        await view.load(needed);
        const current = needed.flatMap((key) => {
          const id = view.entry(key)?.eventId;
          return id === undefined ? [] : view.eventsFor([id]);
        });
        const decision = checkEventAuth(event, authStateFromEvents(current), version, {
          createEvent: view.createEvent(),
        });
        if (!decision.allowed) throw forbidden(decision.reason);
        if (request.condition) {
          const { keys, refusal } = request.condition;
          await view.load(keys.map(([t, k]) => stateKey(t, k)));
          const refused = refusal((t, k) => view.content(stateKey(t, k)));
          if (refused) throw refused;
        }
      }
      const hooked = await this.#prepareHooks(roomId, signed.eventId, signed.pdu, version);
      let result: AppendResult;
      try {
        result = await store.append({
          roomId,
          events: [{
            eventId: signed.eventId,
            pdu: signed.pdu,
            status: "accepted",
            ...(moved ? { checkState: true } : {}),
          }],
          extraMutations: (appended) => [
            ...(request.extraMutations?.(appended[0]) ?? []),
            ...hooked.flatMap((h) => h.writes(appended[0])),
          ],
          expectedHead: head.versionstamp,
        });
      } catch (error) {
        if (error instanceof RoomHeadMoved) continue;
        throw error;
      }
      this.#views.delete(roomId);
      const appended = result.events[0];
      if (appended.status !== "accepted") {
        // Our check on this very head passed, so the store's should too; say so if not.
        throw forbidden(`The event was not accepted: ${appended.status}`);
      }
      await Promise.all(
        hooked.map((h) =>
          h.afterCommit?.(appended).catch((error) => {
            console.error("event hook afterCommit failed", signed.eventId, error);
          })
        ),
      );
      return { eventId: signed.eventId, pdu: signed.pdu, appended };
    }
    throw new MatrixError("M_UNKNOWN", 503, "The room is too busy; try again");
  }

  #now(): number {
    return this.#deps.now?.() ?? Date.now();
  }

  /** A fresh room ID for versions whose room IDs the server chooses (not v12's hashes). */
  newRoomId(): string {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    const opaque = [...bytes].map((b) =>
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[b % 52]
    )
      .join("");
    return `!${opaque}:${this.#deps.serverName}`;
  }
}

interface CachedView {
  versionstamp: string;
  view: RoomStateView;
  prevEvents: EventReference[];
}

/**
 * The slice of a room's current state one batch reads: only the keys its events' auth
 * selection needs, loaded on demand, and overlaid with the state events the batch adds.
 */
class RoomStateView {
  readonly #ids = new Map<StateKey, string>();
  /** Keys already read, present or not, so an unset key is not read again. */
  readonly #loaded = new Set<StateKey>();
  readonly #events = new Map<string, RoomEvent>();
  #create: RoomEvent | undefined;

  constructor(
    private readonly store: EventStore,
    private readonly roomId: string,
    private readonly version: RoomVersion,
  ) {}

  /** Make sure `keys` (and the create event) are loaded from current state, in one read. */
  async load(keys: StateKey[]): Promise<void> {
    const wanted = [CREATE_KEY, ...keys].filter((k) => !this.#loaded.has(k));
    if (wanted.length === 0) return;
    const found = await this.store.currentStateEventIds(this.roomId, wanted);
    for (const key of wanted) {
      this.#loaded.add(key);
      const id = found.get(key);
      if (id !== undefined) this.#ids.set(key, id);
    }
    const missing = [...found.values()].filter((id) => !this.#events.has(id));
    const stored = await this.store.getEvents(missing);
    for (const [id, event] of stored) {
      this.#events.set(id, toStoredRoomEvent(event, this.version));
    }
  }

  /** The prev-event references for a list of event IDs (the forward extremities). */
  async references(eventIds: string[]): Promise<EventReference[]> {
    const stored = await this.store.getEvents(eventIds);
    return eventIds.flatMap((id) => {
      const event = stored.get(id);
      return event ? [{ eventId: id, depth: event.pdu.depth }] : [];
    });
  }

  entry(key: StateKey): { eventId: string } | undefined {
    const eventId = this.#ids.get(key);
    return eventId === undefined ? undefined : { eventId };
  }

  /** The content of a loaded state entry, or undefined when it is unset. */
  content(key: StateKey): JsonObject | undefined {
    const eventId = this.#ids.get(key);
    return eventId === undefined ? undefined : this.#events.get(eventId)?.content;
  }

  eventsFor(ids: string[]): RoomEvent[] {
    return ids.flatMap((id) => this.#events.get(id) ?? []);
  }

  createEvent(): RoomEvent | undefined {
    if (!this.#create) {
      const id = this.#ids.get(CREATE_KEY);
      this.#create = id ? this.#events.get(id) : undefined;
    }
    return this.#create;
  }

  /** Record a state event this batch accepted, so later events see it; others are never auth events. */
  apply(event: RoomEvent): void {
    if (event.state_key === undefined) return;
    const key = stateKey(event.type, event.state_key);
    const replaced = this.#ids.get(key);
    if (replaced !== undefined) this.#events.delete(replaced);
    this.#events.set(event.event_id, event);
    this.#ids.set(key, event.event_id);
    this.#loaded.add(key);
  }
}
