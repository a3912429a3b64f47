/**
 * `m.receipt` EDUs both ways:
 * `{room_id: {"m.read": {user_id: {event_ids: [event_id], data: {ts, thread_id?}}}}}`.
 *
 * Out: a local user's public read receipt (`m.read`, unthreaded or threaded) goes to every other
 * server with a member joined to the room once it is stored; private receipts
 * (`m.read.private`) never leave this server.
 *
 * In: each receipt entry is checked on its own and dropped alone when it fails: the user must be
 * the sending server's and joined to the room, the room must pass `RoomEduGate` (we are in it,
 * the sender has a member joined, the ACL allows it), the fields must be well formed (`ts` a
 * non-negative integer, `thread_id` "main" or the ID of an event of the room held here, event IDs
 * valid: a made-up thread would be one more record kept for good). Only `m.read` is
 * taken (the only type the spec lets servers send). At most `MAX_RECEIPTS_PER_EDU` entries of an
 * EDU are looked at. A receipt for an event of another room is dropped; one for an event we do
 * not hold is kept (as Synapse keeps it) with `UNKNOWN_EVENT_POSITION`, so clients show it once
 * the event reaches them, and the sender's next receipt replaces it. Remote receipts are stored
 * beside local ones and show wherever those do (sync's ephemeral events, initial sync, the
 * legacy event stream); they never move a local user's unread counts.
 */
import type { EventReader } from "../../ports/event_store.ts";
import { type Receipt, UNKNOWN_EVENT_POSITION } from "../../ports/receipt_store.ts";
import { isJsonObject, type JsonObject } from "../../protocol/json.ts";
import { isValidEventId } from "../../protocol/identifiers.ts";
import type { ReceiptFederation, ReceiptService } from "../../ephemeral/receipt_service.ts";
import type { EduHandler } from "../edu_input.ts";
import type { FederationSender } from "../federation_sender.ts";
import { isRoomIdString, isUserOf, RoomEduGate, type RoomEduGateDeps } from "./room_edu_checks.ts";

/** The EDU type. */
export const RECEIPT_EDU = "m.receipt";
/** Most room and user entries of one EDU looked at; the rest are dropped (bounded writes). */
export const MAX_RECEIPTS_PER_EDU = 100;
/** Most event IDs of one receipt looked at (the spec allows one). */
const MAX_EVENT_IDS = 10;
/** Longest thread ID taken (as the client API's limit). */
const MAX_THREAD_ID_CHARS = 255;

/** What the outbound side is built from. */
export interface ReceiptEduSenderDeps {
  store: Pick<EventReader, "serversInRoom">;
  serverName: string;
  sender: Pick<FederationSender, "sendEdus">;
  log?: (message: string, ...details: unknown[]) => void;
}

/** The EDU content of one receipt. */
export function receiptEduContent(receipt: Receipt): JsonObject {
  const data: JsonObject = { ts: receipt.ts };
  if (receipt.threadId !== undefined) data.thread_id = receipt.threadId;
  return {
    [receipt.roomId]: {
      "m.read": { [receipt.userId]: { event_ids: [receipt.eventId], data } },
    },
  };
}

/** Sends local users' public receipts to the room's other servers (`ReceiptService` hook). */
export class ReceiptEduSender implements ReceiptFederation {
  /** Over the room-servers projection and the federation outbox. */
  constructor(private readonly deps: ReceiptEduSenderDeps) {}

  async receiptSent(receipt: Receipt): Promise<void> {
    if (receipt.receiptType !== "m.read") return;
    try {
      const servers = await this.deps.store.serversInRoom(receipt.roomId);
      const edu = { edu_type: RECEIPT_EDU, content: receiptEduContent(receipt) };
      const entries = [...servers.keys()]
        .filter((server) => server !== this.deps.serverName)
        .map((destination) => ({ destination, edu }));
      if (entries.length > 0) await this.deps.sender.sendEdus(entries);
    } catch (error) {
      // The receipt is stored and shown here; other servers miss this one (best effort).
      (this.deps.log ?? console.warn)("federation: queueing a receipt failed", receipt, error);
    }
  }
}

/** What the inbound side is built from. */
export interface ReceiptEduHandlerDeps extends RoomEduGateDeps {
  store: RoomEduGateDeps["store"] & Pick<EventReader, "getEvents">;
  receipts: Pick<ReceiptService, "receiveRemote">;
  now?: () => number;
}

/** One well-formed receipt entry of an EDU. */
interface ReceiptEntry {
  eventIds: string[];
  ts: number;
  threadId?: string;
}

/** Handles inbound `m.receipt` EDUs (see the module comment). */
export class ReceiptEduHandler implements EduHandler {
  readonly #gate: RoomEduGate;

  /** Over the room checks, the event store and the receipt service. */
  constructor(private readonly deps: ReceiptEduHandlerDeps) {
    this.#gate = new RoomEduGate(deps);
  }

  async handle(origin: string, content: JsonObject): Promise<void> {
    let budget = MAX_RECEIPTS_PER_EDU;
    for (const [roomId, byType] of Object.entries(content)) {
      if (budget-- <= 0) return;
      if (!isRoomIdString(roomId) || !isJsonObject(byType) || !isJsonObject(byType["m.read"])) {
        continue;
      }
      const entries: [string, ReceiptEntry][] = [];
      for (const [userId, value] of Object.entries(byType["m.read"])) {
        if (budget-- <= 0) break;
        const entry = parseEntry(value);
        if (entry && isUserOf(origin, userId)) entries.push([userId, entry]);
      }
      if (entries.length === 0 || !(await this.#gate.roomAdmits(origin, roomId))) continue;
      for (const [userId, entry] of entries) {
        if (!(await this.#gate.isJoined(roomId, userId))) continue;
        // A receipt is kept per thread: a thread must be one held here, else every EDU could
        // name a made-up thread and leave one more record for good.
        const thread = entry.threadId;
        if (thread !== undefined && thread !== "main" && !(await this.#holds(roomId, thread))) {
          continue;
        }
        const read = await this.#readEvent(roomId, entry.eventIds);
        if (read === undefined) continue;
        const receipt: Receipt = {
          roomId,
          userId,
          receiptType: "m.read",
          eventId: read.eventId,
          position: read.position,
          ts: entry.ts,
        };
        if (entry.threadId !== undefined) receipt.threadId = entry.threadId;
        await this.deps.receipts.receiveRemote(receipt);
      }
    }
  }

  /** Whether `eventId` is an event of `roomId` held here. */
  async #holds(roomId: string, eventId: string): Promise<boolean> {
    return (await this.deps.store.getEvents([eventId])).get(eventId)?.roomId === roomId;
  }

  /**
   * The latest of the named events held in this room; else the first we do not hold, at
   * `UNKNOWN_EVENT_POSITION`; undefined when every one is another room's.
   */
  async #readEvent(
    roomId: string,
    eventIds: readonly string[],
  ): Promise<{ eventId: string; position: number } | undefined> {
    const events = await this.deps.store.getEvents(eventIds);
    let best: { eventId: string; position: number } | undefined;
    let unknown: string | undefined;
    for (const eventId of eventIds) {
      const event = events.get(eventId);
      if (event === undefined) unknown ??= eventId;
      else if (event.roomId === roomId && (best === undefined || event.position > best.position)) {
        best = { eventId, position: event.position };
      }
    }
    if (best !== undefined) return best;
    return unknown === undefined
      ? undefined
      : { eventId: unknown, position: UNKNOWN_EVENT_POSITION };
  }
}

/** A receipt entry's fields when well formed; null when not. */
function parseEntry(value: unknown): ReceiptEntry | null {
  if (!isJsonObject(value) || !Array.isArray(value.event_ids) || !isJsonObject(value.data)) {
    return null;
  }
  const ids = value.event_ids;
  if (ids.length === 0 || ids.length > MAX_EVENT_IDS) return null;
  if (!ids.every((id): id is string => typeof id === "string" && isValidEventId(id))) return null;
  const { ts, thread_id: threadId } = value.data;
  if (typeof ts !== "number" || !Number.isSafeInteger(ts) || ts < 0) return null;
  const entry: ReceiptEntry = { eventIds: ids, ts };
  if (threadId !== undefined) {
    if (typeof threadId !== "string" || threadId.length > MAX_THREAD_ID_CHARS) return null;
    if (threadId !== "main" && !isValidEventId(threadId)) return null;
    entry.threadId = threadId;
  }
  return entry;
}
