/**
 * How sync shows stored events: client format (or the PDU itself for `event_format:
 * federation`), then the filter's `event_fields`, with the sending device's transaction ID.
 */
import { type ClientEvent, toClientEvent } from "../client_event.ts";
import type { Filter } from "../event_filter.ts";
import type { JsonObject } from "../json.ts";
import type { StoredEvent } from "../ports/event_store.ts";
import type { RoomVersion } from "../room_versions.ts";

/** What rendering one room's events needs. */
export interface RenderContext {
  roomId: string;
  version: RoomVersion;
  now: number;
  filter: Filter;
  /** Transaction IDs of events the syncing device sent, by event ID. */
  transactionIds?: Map<string, string>;
}

/**
 * The events area's presenter (redactions applied, `unsigned.transaction_id`, `prev_content`),
 * shared with /messages and /context so every endpoint shows an event the same way.
 */
export interface EventPresenterLike {
  present(
    events: readonly StoredEvent[],
    options: { roomId: string; version: RoomVersion; deviceId?: string; prevContent?: boolean },
  ): Promise<ClientEvent[]>;
}

/** Render stored events in the filter's format. */
export function renderEvents(events: readonly StoredEvent[], ctx: RenderContext): JsonObject[] {
  return events.map((event) => renderEvent(event, ctx));
}

/**
 * Render through the presenter when there is one and the client format is asked for; the
 * filter's `event_fields` still apply.
 */
export async function presentEvents(
  presenter: EventPresenterLike | undefined,
  events: readonly StoredEvent[],
  ctx: RenderContext & { deviceId: string },
): Promise<JsonObject[]> {
  if (!presenter || ctx.filter.event_format === "federation" || events.length === 0) {
    return renderEvents(events, ctx);
  }
  const presented = await presenter.present(events, {
    roomId: ctx.roomId,
    version: ctx.version,
    deviceId: ctx.deviceId,
    prevContent: true,
  }) as unknown as JsonObject[];
  const fields = ctx.filter.event_fields;
  return fields === undefined ? presented : presented.map((e) => pickFields(e, fields));
}

/** Render one stored event in the filter's format. */
export function renderEvent(event: StoredEvent, ctx: RenderContext): JsonObject {
  let out: JsonObject;
  if (ctx.filter.event_format === "federation") {
    out = { ...event.pdu, event_id: event.eventId } as unknown as JsonObject;
  } else {
    out = toClientEvent(event.eventId, event.pdu, {
      roomId: ctx.roomId,
      version: ctx.version,
      now: ctx.now,
      transactionId: ctx.transactionIds?.get(event.eventId),
    }) as unknown as JsonObject;
  }
  const fields = ctx.filter.event_fields;
  return fields === undefined ? out : pickFields(out, fields);
}

/**
 * Keep only the `event_fields` paths: dot-separated, `\.` for a literal dot. A path through a
 * non-object is skipped.
 */
export function pickFields(event: JsonObject, fields: readonly string[]): JsonObject {
  const out: JsonObject = {};
  for (const field of fields) {
    const path = splitPath(field);
    let from: JsonObject = event;
    let to: JsonObject = out;
    for (let i = 0; i < path.length; i++) {
      const value = from[path[i]];
      if (value === undefined) break;
      if (i === path.length - 1) {
        to[path[i]] = value;
        break;
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) break;
      from = value;
      const next = to[path[i]];
      to = (next !== null && typeof next === "object" && !Array.isArray(next))
        ? next
        : (to[path[i]] = {});
    }
  }
  return out;
}

function splitPath(field: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < field.length; i++) {
    if (field[i] === "\\" && field[i + 1] === ".") {
      current += ".";
      i++;
    } else if (field[i] === ".") {
      parts.push(current);
      current = "";
    } else current += field[i];
  }
  parts.push(current);
  return parts;
}
