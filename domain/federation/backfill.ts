/**
 * Backfilling history from other servers (server-server spec "Backfilling and retrieving missing
 * events"): when a client pages back past the oldest event we hold in a room whose earlier
 * history lives elsewhere (a room we joined: our oldest event's prev events are not in our log),
 * ask a server in the room for `/backfill` from those prev events, and hand every event to the
 * incoming-PDU handler with `backfill` set: the same checks as any PDU (format, signatures,
 * content hash, auth against its auth events and the state before it), positions below the
 * room's first, current state untouched.
 *
 * Events go in newest first, since each backfilled append takes the position just below the
 * room's first: so the log's order stays the DAG's. The handler fetches the state before each
 * event whose prev events are not yet in the log, which a chunk's events are until their turn.
 */
import { referencedIds } from "../events.ts";
import { isJsonObject } from "../json.ts";
import type { EventStore } from "../ports/event_store.ts";
import { type FederationTransport, FederationUnreachable } from "../ports/federation_transport.ts";
import type { PduInput } from "./pdu_input/types.ts";

/** Fetches history older than the room's first held event; see room_event_reads.ts. */
export interface HistoryBackfill {
  /** Fetch up to about `limit` earlier events of `roomId`; resolves to how many were stored. */
  backfill(roomId: string, limit: number): Promise<number>;
}

/** What backfill is built from. */
export interface RemoteBackfillDeps {
  store: EventStore;
  transport: FederationTransport;
  pduInput: PduInput;
  serverName: string;
}

/** Most events asked for in one `/backfill` request. */
export const MAX_BACKFILL_EVENTS = 100;
/** Most servers tried for one backfill. */
const MAX_SERVERS_TRIED = 5;

/** Backfill over federation, through the incoming-PDU checks. */
export class RemoteBackfill implements HistoryBackfill {
  // One backfill of a room at a time in this process: concurrent readers wait for the same one
  // instead of fetching the same history twice (the store would dedupe, the network would not).
  readonly #running = new Map<string, Promise<number>>();

  constructor(private readonly deps: RemoteBackfillDeps) {}

  /** See HistoryBackfill.backfill. */
  backfill(roomId: string, limit: number): Promise<number> {
    const running = this.#running.get(roomId);
    if (running) return running;
    const run = this.#backfill(roomId, Math.max(1, Math.min(limit, MAX_BACKFILL_EVENTS)))
      .finally(() => this.#running.delete(roomId));
    this.#running.set(roomId, run);
    return run;
  }

  async #backfill(roomId: string, limit: number): Promise<number> {
    const { store } = this.deps;
    const first = await store.timeline(roomId, { dir: "f", limit: 1 });
    const oldest = first.events[0];
    if (oldest === undefined) return 0;
    const prevs = referencedIds(oldest.pdu.prev_events);
    if (prevs.length === 0) return 0; // the create event: history is complete
    const found = await store.findEvents(prevs);
    const missing = prevs.filter((id) => {
      const event = found.get(id);
      return event === undefined || event.outlier;
    });
    if (missing.length === 0) return 0;

    for (const server of await this.#servers(roomId, oldest.pdu.sender)) {
      const pdus = await this.#fetch(server, roomId, missing, limit);
      if (pdus === undefined) continue;
      return await this.#store(server, roomId, pdus);
    }
    return 0;
  }

  /** Servers in the room, the oldest event's sender's first (it surely has that history). */
  async #servers(roomId: string, sender: string): Promise<string[]> {
    const members = await this.deps.store.members(roomId, ["join"]);
    const servers = new Set<string>([serverOf(sender)]);
    for (const member of members) servers.add(serverOf(member.userId));
    servers.delete(this.deps.serverName);
    return [...servers].slice(0, MAX_SERVERS_TRIED);
  }

  async #fetch(
    server: string,
    roomId: string,
    from: string[],
    limit: number,
  ): Promise<unknown[] | undefined> {
    const query = [...from.map((id) => `v=${encodeURIComponent(id)}`), `limit=${limit}`];
    try {
      const response = await this.deps.transport.request({
        method: "GET",
        destination: server,
        path: `/_matrix/federation/v1/backfill/${encodeURIComponent(roomId)}?${query.join("&")}`,
      });
      const body = response.body;
      if (response.status !== 200 || !isJsonObject(body) || !Array.isArray(body.pdus)) {
        return undefined;
      }
      return body.pdus.slice(0, limit);
    } catch (error) {
      if (error instanceof FederationUnreachable) return undefined;
      throw error;
    }
  }

  /** Hand the events to the PDU checks newest first; counts the ones stored accepted. */
  async #store(server: string, roomId: string, pdus: unknown[]): Promise<number> {
    const depth = (pdu: unknown) =>
      isJsonObject(pdu) && typeof pdu.depth === "number" ? pdu.depth : 0;
    const ordered = [...pdus].sort((a, b) => depth(b) - depth(a));
    let stored = 0;
    for (const pdu of ordered) {
      const outcome = await this.deps.pduInput.handle(server, roomId, pdu, { backfill: true });
      if (outcome.status === "accepted" && outcome.error === undefined) stored++;
      else if (outcome.error !== undefined && outcome.status === undefined) {
        console.warn("backfill: event not stored", roomId, outcome.eventId, outcome.error);
      }
    }
    return stored;
  }
}

function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}
