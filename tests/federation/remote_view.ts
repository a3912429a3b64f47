/**
 * Another server's copy of a room we host, as plain signed events with the state after each:
 * it starts from our log, adds events of its own (signed with its key) that we may not have
 * seen, and answers the requests the incoming-PDU handler makes of a sender (`/event`,
 * `/event_auth`, `/get_missing_events`, `/state_ids`, `/state`) as a FederationTransport. Built for
 * tests that need a remote server saying exactly what a test wants, forged or honest.
 */
import { buildEvent, type BuiltEvent } from "../../domain/protocol/event_builder.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import { signEvent } from "../../domain/protocol/event_signing.ts";
import {
  type Pdu,
  referencedIds,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../../domain/protocol/events.ts";
import { addContentHash } from "../../domain/protocol/hashing.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";
import type { RoomVersion } from "../../domain/protocol/room_versions.ts";
import type { SigningKey } from "../../domain/protocol/signing.ts";
import type { EventStore } from "../../domain/ports/event_store.ts";
import type {
  FederationRequest,
  FederationResponse,
  FederationTransport,
} from "../../domain/ports/federation_transport.ts";

/** One event of the view with the state after it. */
interface ViewEvent {
  eventId: string;
  pdu: Pdu;
  stateBefore: StateMap;
  stateAfter: StateMap;
}

/** The remote server's room and its answers. */
export class RemoteView implements FederationTransport {
  readonly events = new Map<string, ViewEvent>();
  /** Requests made of this server, as `METHOD path`. */
  readonly requests: string[] = [];
  #clock = 5_000_000;

  constructor(
    readonly roomId: string,
    readonly version: RoomVersion,
    readonly serverName: string,
    readonly key: SigningKey,
  ) {}

  /** Copy every event of our log of the room (all local, so all known to the store). */
  async syncFrom(store: EventStore): Promise<void> {
    const page = await store.timeline(this.roomId, { dir: "f", limit: 500 });
    for (const stored of page.events) {
      if (this.events.has(stored.eventId)) continue;
      const before = (await store.stateAtEvent(stored.eventId, "before"))!;
      const after = (await store.stateAtEvent(stored.eventId, "after"))!;
      this.events.set(stored.eventId, {
        eventId: stored.eventId,
        pdu: stored.pdu,
        stateBefore: before,
        stateAfter: after,
      });
    }
  }

  /**
   * When set, `/get_missing_events` answers exactly these events (none: a server withholding
   * what its events rest on) instead of walking back.
   */
  missingEventsAnswer: string[] | undefined;

  /**
   * Build an event on top of `prev` (event IDs of the view; with several, their states merged,
   * later ones winning), authorised by that state unless `authEvents` is given, signed by this
   * server (or `signer`), and add it to the view.
   */
  async build(
    prev: string | string[],
    event: { sender: string; type: string; stateKey?: string; content: JsonObject },
    options: { authEvents?: string[]; signer?: { name: string; key: SigningKey } } = {},
  ): Promise<BuiltEvent> {
    const prevs = (Array.isArray(prev) ? prev : [prev]).map((id) => {
      const base = this.events.get(id);
      if (!base) throw new Error(`the view has no ${id}`);
      return base;
    });
    const state: StateMap = new Map(prevs.flatMap((p) => [...p.stateAfter]));
    const built = await buildEvent({
      version: this.version,
      roomId: this.roomId,
      ...event,
      prevEvents: prevs.map((p) => ({ eventId: p.eventId, depth: p.pdu.depth })),
      currentState: (key) => {
        const id = state.get(key);
        return id === undefined ? undefined : { eventId: id };
      },
      serverName: options.signer?.name ?? this.serverName,
      signingKey: options.signer?.key ?? this.key,
      originServerTs: this.#clock++,
    });
    // Chosen auth events: hashed and signed again (the event ID changes with them).
    const pdu = options.authEvents
      ? await this.#withAuthEvents(built.pdu, options.authEvents, options.signer)
      : built.pdu;
    const eventId = computeEventId(pdu, this.version);
    const after = new Map(state);
    if (pdu.state_key !== undefined) after.set(stateKey(pdu.type, pdu.state_key), eventId);
    this.events.set(eventId, { eventId, pdu, stateBefore: state, stateAfter: after });
    return { eventId, pdu, event: toRoomEvent(pdu, eventId, this.version) };
  }

  async #withAuthEvents(
    pdu: Pdu,
    authEvents: string[],
    signer?: { name: string; key: SigningKey },
  ): Promise<Pdu> {
    const { signatures: _s, hashes: _h, ...rest } = pdu;
    const hashed = addContentHash(
      { ...rest, auth_events: authEvents } as unknown as Pdu,
      this.version,
    );
    return await signEvent(
      { ...hashed, signatures: {} },
      this.version,
      signer?.name ?? this.serverName,
      signer?.key ?? this.key,
    );
  }

  /** See FederationTransport.request: answers as the sender of the room's events would. */
  request(request: FederationRequest): Promise<FederationResponse> {
    const url = new URL(request.path, "https://remote.invalid");
    this.requests.push(`${request.method} ${url.pathname}`);
    const parts = url.pathname.split("/").map(decodeURIComponent);
    const ok = (body: JsonValue) => Promise.resolve({ status: 200, body });
    const notFound = () => Promise.resolve({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    const route = parts.slice(4, 5)[0];
    if (route === "event") {
      const event = this.events.get(parts[5]);
      return event ? ok({ origin: this.serverName, pdus: [this.#json(event.pdu)] }) : notFound();
    }
    if (route === "event_auth") {
      const event = this.events.get(parts[6]);
      if (!event) return notFound();
      const chain = this.#authChain([event.eventId]);
      return ok({ auth_chain: chain.map((id) => this.#json(this.events.get(id)!.pdu)) });
    }
    if (route === "get_missing_events" && this.missingEventsAnswer) {
      return ok({
        events: this.missingEventsAnswer.map((id) => this.#json(this.events.get(id)!.pdu)),
      });
    }
    if (route === "get_missing_events") {
      const body = request.body as {
        earliest_events: string[];
        latest_events: string[];
        limit: number;
      };
      return ok({ events: this.#missing(body.earliest_events, body.latest_events, body.limit) });
    }
    if (route === "state") {
      const event = this.events.get(url.searchParams.get("event_id") ?? "");
      if (!event) return notFound();
      const pduIds = [...event.stateBefore.values()];
      return ok({
        pdus: pduIds.map((id) => this.#json(this.events.get(id)!.pdu)),
        auth_chain: this.#authChain(pduIds).map((id) => this.#json(this.events.get(id)!.pdu)),
      });
    }
    if (route === "state_ids") {
      const event = this.events.get(url.searchParams.get("event_id") ?? "");
      if (!event) return notFound();
      const pduIds = [...event.stateBefore.values()];
      return ok({
        pdu_ids: pduIds,
        auth_chain_ids: this.#authChain(pduIds),
      });
    }
    return notFound();
  }

  #json(pdu: Pdu): JsonValue {
    return structuredClone(pdu) as unknown as JsonValue;
  }

  /** The IDs of the auth chains of `ids` (without `ids` unless they are in one). */
  #authChain(ids: string[]): string[] {
    const seen = new Set<string>();
    const stack = ids.flatMap((id) => referencedIds(this.events.get(id)!.pdu.auth_events));
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      stack.push(...referencedIds(this.events.get(id)!.pdu.auth_events));
    }
    return [...seen];
  }

  /** Breadth-first from `latest`'s prev events, stopping at `earliest`, at most `limit`. */
  #missing(earliest: string[], latest: string[], limit: number): JsonValue[] {
    const stop = new Set(earliest);
    const out: JsonValue[] = [];
    const seen = new Set<string>(latest);
    let frontier = latest.flatMap((id) =>
      referencedIds(this.events.get(id)?.pdu.prev_events ?? [])
    );
    while (frontier.length > 0 && out.length < limit) {
      const next: string[] = [];
      for (const id of frontier) {
        if (seen.has(id) || stop.has(id) || out.length >= limit) continue;
        seen.add(id);
        const event = this.events.get(id);
        if (!event) continue;
        out.push(this.#json(event.pdu));
        next.push(...referencedIds(event.pdu.prev_events));
      }
      frontier = next;
    }
    return out;
  }
}
