/**
 * Hand-made events and a trivial state resolver for the event store tests. The store does not
 * check hashes or signatures, so PDUs carry placeholders.
 */
import { type StateMap } from "../../domain/protocol/events.ts";
import type {
  AppendRequest,
  EventStatus,
  NewEvent,
  StateResolver,
} from "../../domain/ports/event_store.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
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

/**
 * A varied history for one room, as append requests in arrival order: joins, leaves, state
 * changes, messages, a fork and its merge, rejected and soft-failed events, and backfill; the
 * messages include thread replies, edits, references, reactions and redactions of replies, so
 * the relation projections are rebuilt too.
 */
export function variedRoomHistory(roomId: string, events: number): AppendRequest[] {
  const room = new RoomBuilder(roomId);
  const requests: AppendRequest[] = [];
  const push = (...list: NewEvent[]) => requests.push({ roomId, events: list });
  const create = room.create();
  push(create, room.member("@u0:test", "join"));
  let made = 2;
  let i = 0;
  const messages: string[] = [];
  const replies: string[] = [];
  /** A message, a relation to an earlier one, or a redaction of a thread reply. */
  const talk = (): NewEvent => {
    const pick = (list: string[]) => list[(i * 7) % list.length];
    const relates = (rel_type: string, event_id: string, extra: JsonObject = {}) =>
      room.message(`r${i}`, {
        content: {
          msgtype: "m.text",
          body: `r${i}`,
          "m.relates_to": { rel_type, event_id },
          ...extra,
        },
      });
    if (messages.length > 0 && i % 3 === 0) {
      const reply = relates("m.thread", pick(messages));
      replies.push(reply.eventId);
      return reply;
    }
    if (messages.length > 0 && i % 7 === 2) {
      return relates("m.replace", pick(messages), { "m.new_content": { body: `e${i}` } });
    }
    if (messages.length > 0 && i % 23 === 0) return relates("m.reference", pick(messages));
    if (replies.length > 0 && i % 19 === 0) {
      const redaction = room.event("m.room.redaction", { content: {} });
      (redaction.pdu as { redacts?: string }).redacts = replies.pop();
      return redaction;
    }
    const message = room.message(`m${i}`);
    messages.push(message.eventId);
    return message;
  };
  while (made < events - 4) {
    i++;
    const user = `@u${i % 7}:test`;
    if (i % 11 === 0) {
      // A fork: two children of the same event, then a merge citing both.
      const base = room.last!;
      const a = room.event("m.room.topic", { stateKey: "", content: { topic: `a${i}` } });
      const b = room.event("m.room.topic", {
        stateKey: "",
        content: { topic: `b${i}` },
        prev: [base],
      });
      push(a);
      push(b);
      push(room.message(`merge ${i}`, { prev: [a.eventId, b.eventId] }));
      made += 3;
    } else if (i % 13 === 0) {
      // Nobody builds on a rejected event: the next event cites what it cited.
      const rejected = room.event("m.room.name", {
        stateKey: "",
        content: { name: `x${i}` },
        status: "rejected",
      });
      room.last = rejected.pdu.prev_events[0] as string;
      push(rejected);
      made++;
    } else if (i % 17 === 0) {
      const soft = room.event("m.room.name", {
        stateKey: "",
        content: { name: `s${i}` },
        status: "soft_failed",
      });
      room.last = soft.pdu.prev_events[0] as string;
      push(soft);
      made++;
    } else if (i % 5 === 0) {
      push(room.member(user, i % 10 === 0 ? "leave" : "join"));
      made++;
    } else {
      push(talk());
      made++;
    }
  }
  // Backfill: history older than the create, arriving last, counting positions down.
  const old = new RoomBuilder(roomId, `${roomId.slice(1, 8)}-old`);
  const backfill: NewEvent[] = [];
  while (made < events) {
    backfill.push(old.message(`old ${made}`, { prev: [] }));
    made++;
  }
  requests.push({ roomId, events: backfill, backfill: true });
  return requests;
}
