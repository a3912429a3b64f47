/**
 * Quarantine of every media item a room's events point at (Synapse's admin API
 * `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`): an administrator answering abuse in
 * one room does not have to find each `mxc://` URI by hand. Redacted events have lost their
 * content, so media only they referenced is not reached; quarantine it by ID.
 */
import type { Direction, TimelinePage } from "../ports/event_store.ts";

/** The longest content walk: a PDU is at most 64 KiB, so this is never the limit in practice. */
const MAX_VISITED = 10_000;
/** Events read per timeline page. */
const PAGE = 200;

/** `mxc://server/mediaId` URIs anywhere in an event's content, as (server, mediaId) pairs. */
export function mxcUrisIn(content: unknown): Array<{ server: string; mediaId: string }> {
  const found = new Map<string, { server: string; mediaId: string }>();
  const stack: unknown[] = [content];
  let visited = 0;
  while (stack.length > 0 && visited++ < MAX_VISITED) {
    const value = stack.pop();
    if (typeof value === "string") {
      const match = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]{1,255})$/.exec(value);
      if (match) found.set(value, { server: match[1], mediaId: match[2] });
    } else if (Array.isArray(value)) {
      stack.push(...value);
    } else if (value !== null && typeof value === "object") {
      stack.push(...Object.values(value));
    }
  }
  return [...found.values()];
}

/** What the quarantine needs: the room's timeline and the media service. */
export interface RoomMediaQuarantineDeps {
  timeline(
    roomId: string,
    options: { from?: string; dir: Direction; limit: number },
  ): Promise<TimelinePage>;
  quarantine(server: string, mediaId: string): Promise<boolean>;
}

/**
 * Quarantine every stored media item (local, or a cached remote copy) the room's events
 * reference; how many were found and quarantined.
 */
export async function quarantineRoomMedia(
  deps: RoomMediaQuarantineDeps,
  roomId: string,
): Promise<number> {
  const seen = new Set<string>();
  let quarantined = 0;
  let from: string | undefined;
  while (true) {
    const page = await deps.timeline(roomId, { ...(from ? { from } : {}), dir: "b", limit: PAGE });
    for (const event of page.events) {
      for (const { server, mediaId } of mxcUrisIn((event.pdu as { content?: unknown }).content)) {
        const key = `${server}/${mediaId}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (await deps.quarantine(server, mediaId)) quarantined++;
      }
    }
    if (page.end === undefined || page.events.length === 0) return quarantined;
    from = page.end;
  }
}
