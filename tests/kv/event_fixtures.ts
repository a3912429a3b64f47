/**
 * Hand-made events and a trivial state resolver for the event store tests. The store does not
 * check hashes or signatures, so PDUs carry placeholders.
 */
import { type StateMap } from "../../domain/events.ts";
import type { EventStatus, NewEvent, StateResolver } from "../../domain/ports/event_store.ts";
import type { JsonObject } from "../../domain/json.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";

/** Resolve by taking, for each conflicted key, the greatest event ID (order independent). */
export const greatestIdResolver: StateResolver = (input) => {
  const out: StateMap = new Map();
  for (const map of input.stateMaps) {
    for (const [key, id] of map) {
      const have = out.get(key);
      if (have === undefined || id > have) out.set(key, id);
    }
  }
  return Promise.resolve(out);
};

/** Open an in-memory store with the trivial resolver. */
export async function memoryStore(): Promise<{ kv: Deno.Kv; store: KvEventStore }> {
  const kv = await Deno.openKv(":memory:");
  return { kv, store: new KvEventStore(kv, { resolver: greatestIdResolver }) };
}

/** Options for one fixture event. */
export interface EventOptions {
  stateKey?: string;
  content?: JsonObject;
  sender?: string;
  /** Defaults to the previous event built by this builder. */
  prev?: string[];
  status?: EventStatus;
  id?: string;
}

/** Builds a chain of events in one room with predictable IDs. */
export class RoomBuilder {
  #n = 0;
  last: string | undefined;

  /** Events of `roomId`; IDs are `$<tag>-<n>`. */
  constructor(readonly roomId: string, readonly tag = roomId.slice(1, 8)) {}

  /** One event; `last` moves to it. */
  event(type: string, options: EventOptions = {}): NewEvent {
    const id = options.id ?? `$${this.tag}-${String(++this.#n).padStart(6, "0")}`;
    const prev = options.prev ?? (this.last ? [this.last] : []);
    const pdu = {
      room_id: this.roomId,
      sender: options.sender ?? "@alice:test",
      type,
      content: options.content ?? {},
      origin_server_ts: 1_700_000_000_000 + this.#n,
      depth: this.#n,
      prev_events: prev,
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      ...(options.stateKey === undefined ? {} : { state_key: options.stateKey }),
    };
    this.last = id;
    return { eventId: id, pdu, status: options.status ?? "accepted" };
  }

  /** The create event (room version 10). */
  create(): NewEvent {
    return this.event("m.room.create", { stateKey: "", content: { room_version: "10" } });
  }

  /** A membership event for `userId`. */
  member(userId: string, membership: string, options: EventOptions = {}): NewEvent {
    return this.event("m.room.member", {
      stateKey: userId,
      sender: userId,
      content: { membership },
      ...options,
    });
  }

  /** A message. */
  message(body: string, options: EventOptions = {}): NewEvent {
    return this.event("m.room.message", { content: { msgtype: "m.text", body }, ...options });
  }
}
