/**
 * Rooms for the append benchmark: real signed events built ahead of time, so the timed part
 * measures the store and not event building. Each room is created through the local sender
 * (create, join, power levels, join rules) and then given a linear chain of m.room.message
 * PDUs, each citing the one before it as its only prev_event.
 */
import { canonicalJsonBytes } from "../domain/protocol/canonical_json.ts";
import { buildEvent } from "../domain/protocol/event_builder.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import { LocalEventSender } from "../domain/local_event_sender.ts";
import type { EventStore, NewEvent } from "../domain/ports/event_store.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import type { SigningKey } from "../domain/protocol/signing.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import { KvEventStore } from "../kv/kv_event_store.ts";

/** The benchmark's server name and its one user. */
export const BENCH_SERVER = "bench.test";
/** The user who creates every room and sends every message. */
export const BENCH_USER = "@alice:bench.test";

// A short chat line: a signed v10 message is already about 600 bytes of canonical JSON before
// its body (three auth event IDs, one prev, content hash, signature), so no padding is added.
const BODY = "hello, world";

/** A room whose setup and message events are built and signed, ready to append. */
export interface PreparedRoom {
  roomId: string;
  version: string;
  /** create, join, power levels, join rules: appended untimed before each run. */
  setup: NewEvent[];
  /** The linear chain of messages, in the order they must be appended. */
  messages: NewEvent[];
}

/** Create a room the way a client would: create, creator's join, power levels, join rules. */
export async function createBenchRoom(sender: LocalEventSender, version: string): Promise<string> {
  const { roomId } = await sender.createRoom({ version, creator: BENCH_USER });
  const send = (type: string, content: JsonObject, stateKey = "") =>
    sender.send({ roomId, sender: BENCH_USER, type, stateKey, content });
  await send("m.room.member", { membership: "join" }, BENCH_USER);
  // v12 creators hold infinite power already and may not be listed in `users`.
  await send("m.room.power_levels", version === "12" ? {} : { users: { [BENCH_USER]: 100 } });
  await send("m.room.join_rules", { join_rule: "public" });
  return roomId;
}

/** Message content of a benchmark event; `n` keeps bodies distinct. */
export function messageContent(n: number): JsonObject {
  return { msgtype: "m.text", body: `${n}: ${BODY}` };
}

/**
 * Build `rooms` rooms with `messagesPerRoom` chained messages each. The rooms are made in a
 * scratch `:memory:` store, which only lends its current state to the builder.
 */
export async function prepareRooms(options: {
  rooms: number;
  messagesPerRoom: number;
  version: string;
  signingKey: SigningKey;
}): Promise<PreparedRoom[]> {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvEventStore(kv, { resolver: resolveState });
    const sender = new LocalEventSender({
      store,
      serverName: BENCH_SERVER,
      signingKey: options.signingKey,
    });
    return await Promise.all(
      Array.from({ length: options.rooms }, () => prepareRoom(store, sender, options)),
    );
  } finally {
    kv.close();
  }
}

async function prepareRoom(
  store: EventStore,
  sender: LocalEventSender,
  options: { messagesPerRoom: number; version: string; signingKey: SigningKey },
): Promise<PreparedRoom> {
  const version = roomVersion(options.version);
  if (!version) throw new Error(`unknown room version ${options.version}`);
  const roomId = await createBenchRoom(sender, options.version);
  const page = await store.timeline(roomId, { dir: "f", limit: 10 });
  const setup = page.events.map((e): NewEvent => ({
    eventId: e.eventId,
    pdu: e.pdu,
    status: "accepted",
  }));
  const state = await store.currentState(roomId);
  const last = page.events[page.events.length - 1];
  let prev = { eventId: last.eventId, depth: last.pdu.depth };
  const messages: NewEvent[] = [];
  for (let n = 0; n < options.messagesPerRoom; n++) {
    const built = await buildEvent({
      version,
      roomId,
      sender: BENCH_USER,
      type: "m.room.message",
      content: messageContent(n),
      prevEvents: [prev],
      currentState: (key) => {
        const eventId = state.get(key);
        return eventId === undefined ? undefined : { eventId };
      },
      serverName: BENCH_SERVER,
      signingKey: options.signingKey,
      originServerTs: 1_700_000_000_000 + n,
    });
    messages.push({ eventId: built.eventId, pdu: built.pdu, status: "accepted" });
    prev = { eventId: built.eventId, depth: built.pdu.depth };
  }
  return { roomId, version: options.version, setup, messages };
}

/** Mean size in bytes of the messages' canonical JSON. */
export function meanPduBytes(rooms: readonly PreparedRoom[]): number {
  let total = 0;
  let count = 0;
  for (const room of rooms) {
    for (const m of room.messages) {
      total += canonicalJsonBytes(m.pdu).length;
      count++;
    }
  }
  return count === 0 ? 0 : total / count;
}
