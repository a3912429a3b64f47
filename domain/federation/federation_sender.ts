/**
 * The federation sender: every accepted event a local user sends into a room shared with other
 * servers is queued, in the event's own commit, on one outbox stream per destination server (a
 * transactional outbox: the event and its sending are both there or neither is), and an outbox
 * worker drains each stream as transactions (see federation_transactions.ts).
 *
 * Destinations of an event: the servers with remote members joined in the state the event is
 * authorised on, plus the server of a remote user the event is aimed at (kick, ban; invites go
 * through the invite API), never this server. The remote servers of each room, with their joined
 * member counts, are kept in memory and checked on every event against KV: by the room head's
 * current-state ID for the first event of a batch (read afresh from the room servers projection,
 * one entry per server, when it changed), and by the event's prev event for the ones after it
 * (an event built on the event prepared just before it sees exactly that event's state). A room
 * with no remote member costs a map lookup; only a member event of a remote user reads more.
 *
 * Streams are drained under a lease per destination (two processes never send one stream at
 * once, and a slow or dead destination holds only its own stream), with exponential backoff per
 * destination, cleared by `noteInboundRequest` when that server talks to us (as Synapse does).
 */
import { serverNameOf } from "../protocol/auth_context.ts";
import { referencedIds } from "../protocol/events.ts";
import type { Pdu } from "../protocol/events.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import type { AppendedEvent, CommitMutation, EventReader } from "../ports/event_store.ts";
import type { FederationTransport } from "../ports/federation_transport.ts";
import type { OutboxAppend, OutboxStore } from "../ports/outbox_store.ts";
import { OutboxWorker, type OutboxWorkerOptions } from "../outbox/outbox_worker.ts";
import {
  type Edu,
  FederationDelivery,
  type FederationPayload,
  MAX_EDUS_PER_TRANSACTION,
  MAX_PDUS_PER_TRANSACTION,
} from "./federation_transactions.ts";

/** Rooms whose remote members are kept between events; the least recently used is dropped. */
const CACHED_ROOMS = 1024;
/**
 * Destinations whose entries ride in the event's commit (two writes each: the entry and the
 * stream's pending marker). The rest are appended right after the commit, before the sender is
 * answered: a crash in between loses those servers' copy of this event, never the event, and
 * they fetch it through the prev_events of the next one (get_missing_events).
 */
const DESTINATIONS_PER_COMMIT = 100;
/** Key bytes the in-commit entries of one event may take, of KV's 80 KiB per commit. */
const IN_COMMIT_KEY_BYTES = 24 * 1024;
/** Fixed parts of one destination's two keys (prefixes, stream kind, timestamp, position). */
const KEY_BYTES_PER_DESTINATION = 80;

/** Backoff of a failing destination: 2 s, doubling, at most an hour; never given up. */
const FEDERATION_BACKOFF: Partial<OutboxWorkerOptions> = {
  backoffBaseMs: 2_000,
  maxBackoffMs: 3_600_000,
  maxFailures: Infinity,
};
/** How long one transaction may take before it counts as failed (Synapse allows 60 s). */
const TRANSACTION_TIMEOUT_MS = 25_000;
/**
 * A destination's lease: a worker starts no batch past half of it, so one transaction always
 * ends within it. A process that dies holding it (a crash; a clean stop releases it) keeps
 * the destination waiting this long at most.
 */
const LEASE_MS = 60_000;

/** What the sender is built from. */
export interface FederationSenderDeps {
  /** Room heads, the servers in each room and members' state (destinations), the events. */
  store: Pick<
    EventReader,
    "roomHead" | "serversInRoom" | "currentStateEventId" | "getEvent" | "getEvents"
  >;
  /** The federation outbox stream (kind FEDERATION_STREAM). */
  outbox: OutboxStore;
  transport: FederationTransport;
  serverName: string;
  /** False (`TESSERA_FEDERATION=off`): nothing is queued and nothing sent. */
  enabled?: boolean;
  now?: () => number;
  /** Worker tuning (tests: holder names, backoff, polling); federation's defaults otherwise. */
  worker?: Partial<Omit<OutboxWorkerOptions, "store" | "deliver">>;
  /** Where delivery warnings go (tests capture them). */
  log?: (message: string, ...details: unknown[]) => void;
}

/** The remote servers with members joined in one room state, and how many each. */
type RemoteServers = ReadonlyMap<string, number>;

/** Remote servers of a room at its head's current state, valid while that state ID stands. */
interface HeadServers {
  stateId: string;
  remote: RemoteServers;
}

/**
 * Remote servers after the last event this process prepared in a room, and whether each remote
 * user whose membership the chain of prepared events (since the head was read) changed is
 * joined after it: their events may not be committed yet, so KV cannot tell.
 */
interface TipServers {
  eventId: string;
  remote: RemoteServers;
  joined: ReadonlyMap<string, boolean>;
}

/** In-room state the chain of prepared events after a head read has decided (see TipServers). */
interface ChainState {
  remote: RemoteServers;
  joined: ReadonlyMap<string, boolean>;
}

/** Users a tip remembers; a longer chain of member events starts afresh from what KV holds. */
const TIP_USERS = 4096;

/** Queues local events (and EDUs) for other servers and runs the worker that sends them. */
export class FederationSender implements LocalEventHook {
  readonly #deps: FederationSenderDeps;
  readonly #enabled: boolean;
  readonly #worker: OutboxWorker;
  readonly #heads = new Map<string, HeadServers>();
  readonly #tips = new Map<string, TipServers>();
  #eduSequence = 0;

  /** A sender over the event store, the federation outbox and the transport. */
  constructor(deps: FederationSenderDeps) {
    this.#deps = deps;
    this.#enabled = deps.enabled ?? true;
    const delivery = new FederationDelivery({
      store: deps.store,
      transport: deps.transport,
      serverName: deps.serverName,
      now: deps.now,
      log: deps.log,
      timeoutMs: TRANSACTION_TIMEOUT_MS,
    });
    this.#worker = new OutboxWorker({
      // One transaction's worth at a time: delivery takes what fits and the worker peeks again.
      batchSize: MAX_PDUS_PER_TRANSACTION + MAX_EDUS_PER_TRANSACTION,
      ...FEDERATION_BACKOFF,
      leaseMs: LEASE_MS,
      now: deps.now,
      ...deps.worker,
      store: deps.outbox,
      deliver: (destination, entries) => delivery.deliver(destination, entries),
    });
  }

  /** The LocalEventHook: queue an accepted local event for every destination, in its commit. */
  prepare(
    event: { eventId: string; roomId: string; pdu: Pdu },
    _version: RoomVersion,
  ): Promise<PreparedEventWrites | undefined> {
    // Remote events reach hooks too (the store runs them for every append); they are the
    // origin's to send, except those we forward on the origin's behalf (prepareForwarded).
    if (serverNameOf(event.pdu.sender) !== this.#deps.serverName) {
      return Promise.resolve(undefined);
    }
    return this.#prepare(event);
  }

  /**
   * Queue a remote server's event we resident-host on its behalf (a join, leave or knock it sent
   * through send_join, send_leave or send_knock) for the other servers in the room: the writes
   * for the commit that appends it. The origin itself gets nothing.
   */
  prepareForwarded(
    event: { eventId: string; roomId: string; pdu: Pdu },
    origin: string,
  ): Promise<PreparedEventWrites | undefined> {
    return this.#prepare(event, origin);
  }

  /**
   * Queue EDUs (typing, receipts, presence, device lists, to-device) in the same streams as
   * PDUs, committed on their own and sent within the next transaction to each destination.
   * EDUs queued by this process leave in the order queued (see `eduMutations`).
   */
  async sendEdus(entries: readonly { destination: string; edu: Edu }[]): Promise<void> {
    const appends = this.#eduAppends(entries);
    if (appends.length === 0) return;
    await this.#deps.outbox.append(appends);
    this.#worker.wake();
  }

  /** Queue one EDU for `destination` (see `sendEdus`). */
  sendEdu(destination: string, edu: Edu): Promise<void> {
    return this.sendEdus([{ destination, edu }]);
  }

  /**
   * The outbox writes of `entries` for another commit (to-device messages ride in their
   * transaction record's commit, so they are queued exactly when the request counts as done).
   * Call `wake()` once that commit landed. Nothing for this server, or with federation off.
   *
   * Order: by queueing time, then a per-process sequence, so EDUs one process queues in one
   * millisecond keep their order (device-list updates of a user, to-device messages of a
   * sender). Two processes queueing in one millisecond interleave arbitrarily; the receivers
   * of order-sensitive EDUs cope (a device-list gap is resynchronised).
   */
  eduMutations(entries: readonly { destination: string; edu: Edu }[]): CommitMutation[] {
    const appends = this.#eduAppends(entries);
    return appends.length === 0 ? [] : this.#deps.outbox.mutations(appends);
  }

  #eduAppends(entries: readonly { destination: string; edu: Edu }[]): OutboxAppend[] {
    if (!this.#enabled) return [];
    const now = this.#now();
    const appends: OutboxAppend[] = [];
    for (const { destination, edu } of entries) {
      if (destination === this.#deps.serverName) continue;
      const payload: FederationPayload = {
        kind: "edu",
        edu_type: edu.edu_type,
        content: edu.content,
      };
      // The empty room slot sorts before any room ID: EDUs of one millisecond go first. The
      // random tail keeps two processes' entries of one millisecond and sequence apart.
      const sequence = String(this.#eduSequence++).padStart(12, "0");
      const order = [now, "", `${sequence}.${crypto.randomUUID()}`];
      appends.push({ destination, order, payload });
    }
    return appends;
  }

  /**
   * A request from `origin` passed authentication: it is up, so whatever backoff its stream was
   * under is cleared and its queue sent now. Never rejects (request auth calls it on every
   * request without waiting); costs one KV read when there is no backoff.
   */
  async noteInboundRequest(origin: string): Promise<void> {
    if (!this.#enabled || origin === this.#deps.serverName) return;
    try {
      if (await this.#deps.outbox.resetRetry(origin)) this.#worker.retryNow(origin);
    } catch (error) {
      console.warn("federation: clearing the backoff failed", origin, error);
    }
  }

  /** Run the sending loop in the background (main.ts starts it with the server). */
  start(): void {
    if (this.#enabled) this.#worker.start();
  }

  /** Stop the loop, waiting for the transactions in flight (call it before closing KV). */
  stop(): Promise<void> {
    return this.#worker.stop();
  }

  /** One pass over every destination with queued entries (tests drive the sender with it). */
  runOnce(): Promise<void> {
    return this.#worker.runOnce();
  }

  /** Entries were queued in this process: send soon. */
  wake(): void {
    this.#worker.wake();
  }

  async #prepare(
    event: { eventId: string; roomId: string; pdu: Pdu },
    origin?: string,
  ): Promise<PreparedEventWrites | undefined> {
    if (!this.#enabled) return undefined;
    const { roomId, eventId, pdu } = event;
    const before = await this.#remoteServersBefore(roomId, pdu);
    const after = await this.#remoteServersAfter(roomId, before, pdu);
    this.#remember(this.#tips, roomId, { eventId, ...after });
    const target = memberTarget(pdu);
    if (before.remote.size === 0 && target === undefined) return undefined;

    const destinations = new Set<string>(before.remote.keys());
    if (target !== undefined) destinations.add(serverNameOf(target));
    destinations.delete(this.#deps.serverName);
    if (origin !== undefined) destinations.delete(origin);
    if (destinations.size === 0) return undefined;

    const all = [...destinations];
    const fitting = inCommitCount(all, roomId);
    const inCommit = all.slice(0, fitting);
    const overflow = all.slice(fitting);
    const appends = (list: string[], appended: AppendedEvent): OutboxAppend[] => {
      const payload: FederationPayload = {
        kind: "pdu",
        room_id: roomId,
        event_id: eventId,
        position: appended.position,
      };
      const order = [pdu.origin_server_ts, roomId, appended.position];
      return list.map((destination) => ({ destination, order, payload }));
    };
    // Only an event that lands accepted leaves (a forwarded one may be rejected or soft-failed).
    const sendable = (appended: AppendedEvent) => appended.status === "accepted";
    return {
      // The entry and pending marker per destination, and the stream's wake key once.
      weight: 2 * inCommit.length + (inCommit.length > 0 ? 1 : 0),
      writes: (appended): CommitMutation[] =>
        sendable(appended) ? this.#deps.outbox.mutations(appends(inCommit, appended)) : [],
      afterCommit: async (appended) => {
        if (!sendable(appended)) return;
        if (overflow.length > 0) await this.#deps.outbox.append(appends(overflow, appended));
        this.#worker.wake();
      },
    };
  }

  /**
   * The remote servers joined in the state `pdu` is built on. An event whose only prev event is
   * the one prepared just before it in this process sees that event's state, known without a
   * read; any other event is built on the room's head (the local sender builds on all forward
   * extremities), whose servers are read from the room servers projection when its state ID
   * changed since the last read.
   */
  async #remoteServersBefore(roomId: string, pdu: Pdu): Promise<ChainState> {
    const prev = referencedIds(pdu.prev_events);
    const tip = this.#tips.get(roomId);
    if (tip && prev.length === 1 && prev[0] === tip.eventId) return tip;
    const { store } = this.#deps;
    // The head first: a commit landing between the two reads caches newer servers under an
    // older state ID, which the next event's check discards, never older servers under a newer.
    const head = await store.roomHead(roomId);
    if (!head) return { remote: new Map(), joined: new Map() };
    let cached = this.#heads.get(roomId);
    if (cached?.stateId !== head.currentStateId) {
      const remote = await store.serversInRoom(roomId);
      remote.delete(this.#deps.serverName);
      cached = { stateId: head.currentStateId, remote };
    }
    this.#remember(this.#heads, roomId, cached);
    return { remote: cached.remote, joined: new Map() };
  }

  /**
   * The remote servers after `pdu`, given those before it (copied only when it changes them).
   * Only a member event of a remote user can: whether that user was joined before comes from
   * the chain when an earlier prepared event decided it, else from the room's current state,
   * which is the state the chain started from (if another commit moved it, this event's own
   * commit fails its head check and the event is prepared again on the new head).
   */
  async #remoteServersAfter(roomId: string, before: ChainState, pdu: Pdu): Promise<ChainState> {
    if (pdu.type !== "m.room.member" || pdu.state_key === undefined) return before;
    const userId = pdu.state_key;
    const server = serverNameOf(userId);
    if (server === this.#deps.serverName) return before;
    const joins = (pdu.content as JsonObject).membership === "join";
    const wasJoined = before.joined.get(userId) ?? await this.#joinedNow(roomId, userId);
    const joined = new Map(before.joined.size < TIP_USERS ? before.joined : []);
    joined.set(userId, joins);
    if (joins === wasJoined) return { remote: before.remote, joined };
    const remote = new Map(before.remote);
    const count = (remote.get(server) ?? 0) + (joins ? 1 : -1);
    if (count > 0) remote.set(server, count);
    else remote.delete(server);
    return { remote, joined };
  }

  /** Whether `userId` is joined to the room in its current state (two reads). */
  async #joinedNow(roomId: string, userId: string): Promise<boolean> {
    const { store } = this.#deps;
    const id = await store.currentStateEventId(roomId, "m.room.member", userId);
    const event = id === null ? null : await store.getEvent(id);
    return (event?.pdu.content as JsonObject | undefined)?.membership === "join";
  }

  #remember<T>(map: Map<string, T>, roomId: string, value: T): void {
    map.delete(roomId);
    map.set(roomId, value);
    if (map.size > CACHED_ROOMS) map.delete(map.keys().next().value!);
  }

  #now(): number {
    return (this.#deps.now ?? Date.now)();
  }
}

/**
 * The remote user a kick or ban is about, when it is not its own sender's. Not an invite: the
 * invitee's server has it already, signed through the invite API, and a PDU of a room it is not
 * in is one it cannot place (Synapse sends only to servers in the room; SyTest's server fails).
 */
function memberTarget(pdu: Pdu): string | undefined {
  if (pdu.type !== "m.room.member" || pdu.state_key === undefined) return undefined;
  if ((pdu.content as JsonObject).membership === "invite") return undefined;
  return pdu.state_key === pdu.sender ? undefined : pdu.state_key;
}

/** How many of `destinations` fit the event's commit (by count and by key bytes). */
function inCommitCount(destinations: readonly string[], roomId: string): number {
  const encoder = new TextEncoder();
  const roomBytes = encoder.encode(roomId).length;
  let bytes = 0;
  const max = Math.min(destinations.length, DESTINATIONS_PER_COMMIT);
  for (let i = 0; i < max; i++) {
    bytes += KEY_BYTES_PER_DESTINATION + 2 * encoder.encode(destinations[i]).length + roomBytes;
    if (bytes > IN_COMMIT_KEY_BYTES) return i;
  }
  return max;
}
