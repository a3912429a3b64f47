/**
 * The client-server event format: what `/sync`, `/messages`, `/event` and `/state` return for a
 * stored PDU. One function so every endpoint shows events the same way.
 */
import type { JsonObject } from "./json.ts";
import type { Pdu } from "./events.ts";
import { type RoomVersion } from "./room_versions.ts";

/** An event as clients see it. */
export interface ClientEvent {
  content: JsonObject;
  event_id: string;
  origin_server_ts: number;
  room_id: string;
  sender: string;
  type: string;
  state_key?: string;
  /** Redactions: top-level for v1-10 rooms; from v11 in content, and mirrored here for old clients. */
  redacts?: string;
  unsigned?: JsonObject;
}

/** What the caller knows beyond the PDU itself. */
export interface ClientEventContext {
  /** The room's ID (a v12 create event carries none in its PDU). */
  roomId: string;
  version: RoomVersion;
  /** Now, for `unsigned.age`. */
  now: number;
  /** Only for the device that sent it: its transaction ID. */
  transactionId?: string;
  /** For state events: the content of the state this one replaced. */
  prevContent?: JsonObject;
  /** For state events: who sent the state this one replaced (`unsigned.prev_sender`). */
  prevSender?: string;
  /**
   * When redacted: the redaction event, already in client format (`unsigned.redacted_because`,
   * and its ID as `unsigned.redacted_by`, as Synapse puts both).
   */
  redactedBecause?: ClientEvent;
}

/** The client format of a stored PDU (pass the redacted PDU when the event is redacted). */
export function toClientEvent(eventId: string, pdu: Pdu, ctx: ClientEventContext): ClientEvent {
  const event: ClientEvent = {
    content: pdu.content,
    event_id: eventId,
    origin_server_ts: pdu.origin_server_ts,
    room_id: ctx.roomId,
    sender: pdu.sender,
    type: pdu.type,
  };
  if (pdu.state_key !== undefined) event.state_key = pdu.state_key;
  const redacts = ctx.version.redactsInContent
    ? (typeof pdu.content.redacts === "string" ? pdu.content.redacts : undefined)
    : pdu.redacts;
  if (pdu.type === "m.room.redaction" && redacts !== undefined) event.redacts = redacts;

  const unsigned: JsonObject = { ...pdu.unsigned };
  unsigned.age = Math.max(0, ctx.now - pdu.origin_server_ts);
  if (ctx.transactionId !== undefined) unsigned.transaction_id = ctx.transactionId;
  if (ctx.prevContent !== undefined) unsigned.prev_content = ctx.prevContent;
  if (ctx.prevSender !== undefined) unsigned.prev_sender = ctx.prevSender;
  if (ctx.redactedBecause !== undefined) {
    unsigned.redacted_because = ctx.redactedBecause as unknown as JsonObject;
    unsigned.redacted_by = ctx.redactedBecause.event_id;
  }
  event.unsigned = unsigned;
  return event;
}

/** The stripped form used for invite and knock room state. */
export function toStrippedStateEvent(pdu: Pdu): JsonObject {
  const stripped: JsonObject = {
    content: pdu.content,
    sender: pdu.sender,
    type: pdu.type,
  };
  if (pdu.state_key !== undefined) stripped.state_key = pdu.state_key;
  return stripped;
}
