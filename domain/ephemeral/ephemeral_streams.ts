/**
 * Sync streams for ephemeral data: typing and receipts per joined room (`ephemeral`), and
 * presence of the user and everyone sharing a room with them.
 */
import { matchesEventFilter } from "../protocol/event_filter.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { PresenceStore } from "../ports/presence_store.ts";
import type { Receipt, ReceiptStore } from "../ports/receipt_store.ts";
import type { TypingStore } from "../ports/typing_store.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import { joinedRoomEntry, type SyncResponse } from "../sync/sync_response.ts";
import { presenceContent } from "./presence_service.ts";

function ephemeralAllowed(request: SyncStreamRequest, type: string, roomId: string): boolean {
  const filter = request.filter.room?.ephemeral ?? {};
  return matchesEventFilter(filter, { type, sender: request.userId, room_id: roomId }) &&
    !(filter.not_rooms?.includes(roomId)) &&
    (filter.rooms === undefined || filter.rooms.includes(roomId));
}

/** `m.typing` for joined rooms whose typing changed in the window (current typers on a full sync). */
export class TypingStream implements SyncStreamProvider {
  readonly name = "typing";

  /** Read typing records from `store`. */
  constructor(private readonly store: Pick<TypingStore, "changes">) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const since = request.fullState ? undefined : request.since;
    const records = await this.store.changes(request.joinedRoomIds, { since, upTo: request.upTo });
    for (const record of records) {
      if (!ephemeralAllowed(request, "m.typing", record.roomId)) continue;
      // Expiry timers may live in another isolate: never show typing that has timed out.
      const userIds = Object.entries(record.users)
        .filter(([, expiry]) => expiry > request.now)
        .map(([userId]) => userId)
        .sort();
      if (since === undefined && userIds.length === 0) continue;
      joinedRoomEntry(response, record.roomId).ephemeral.events.push({
        type: "m.typing",
        content: { user_ids: userIds },
      });
    }
  }
}

/** Group receipts into one `m.receipt` content: event -> type -> user -> {ts, thread_id}. */
export function receiptContent(receipts: readonly Receipt[]): JsonObject {
  const content: Record<string, Record<string, Record<string, JsonObject>>> = {};
  for (const r of receipts) {
    const byType = content[r.eventId] ??= {};
    const byUser = byType[r.receiptType] ??= {};
    const data: JsonObject = { ts: r.ts };
    if (r.threadId !== undefined) data.thread_id = r.threadId;
    byUser[r.userId] = data;
  }
  return content;
}

/** `m.receipt` for joined rooms; private receipts only to their owner. */
export class ReceiptStream implements SyncStreamProvider {
  readonly name = "receipts";

  /** Read receipts from `store`. */
  constructor(private readonly store: Pick<ReceiptStore, "changes">) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const since = request.fullState ? undefined : request.since;
    const changes = await this.store.changes(request.joinedRoomIds, {
      since,
      upTo: request.upTo,
    });
    for (const [roomId, receipts] of changes) {
      if (!ephemeralAllowed(request, "m.receipt", roomId)) continue;
      const visible = receipts.filter((r) =>
        r.receiptType === "m.read" || r.userId === request.userId
      );
      if (visible.length === 0) continue;
      joinedRoomEntry(response, roomId).ephemeral.events.push({
        type: "m.receipt",
        content: receiptContent(visible),
      });
    }
  }
}

/** Rooms whose member lists are read at once when finding who a user shares rooms with. */
const MEMBER_READS_IN_FLIGHT = 8;

/** `m.presence` of users sharing a joined room with the syncing user, and of the user. */
export class PresenceStream implements SyncStreamProvider {
  readonly name = "presence";

  /** Read presence from `store` and room members from `events`. */
  constructor(
    private readonly store: Pick<PresenceStore, "changesOf">,
    private readonly events: Pick<EventReader, "members">,
  ) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const filter = request.filter.presence ?? {};
    if (filter.limit === 0 || filter.types?.length === 0) return;
    const since = request.fullState ? undefined : request.since;
    // By audience: reading the server-wide change list made every sync cost O(all users).
    const records = await this.store.changesOf(
      async () => [...await this.#visibleUsers(request)],
      { since, upTo: request.upTo },
    );
    // Users who newly share a room with the syncing user: their presence as it is now, even
    // unchanged in the window (the client has none of theirs yet), as Synapse sends it.
    if (since !== undefined && request.newcomers) {
      const sent = new Set(records.map((r) => r.userId));
      const newcomers = [...await request.newcomers].filter((u) => !sent.has(u));
      if (newcomers.length > 0) {
        const found = await this.store.changesOf(() => Promise.resolve(newcomers), {
          upTo: request.upTo,
        });
        records.push(...found);
        // One who never set presence is offline (what /presence answers for them too).
        const known = new Set(found.map((r) => r.userId));
        for (const userId of newcomers) {
          if (!known.has(userId)) records.push({ userId, presence: "offline" });
        }
      }
    }
    for (const record of records) {
      const event = {
        type: "m.presence",
        sender: record.userId,
        content: presenceContent(record, request.now),
      };
      if (matchesEventFilter(filter, event)) response.presence.events.push(event);
    }
  }

  /** The user and everyone joined to one of the user's joined rooms. */
  async #visibleUsers(request: SyncStreamRequest): Promise<Set<string>> {
    const visible = new Set([request.userId]);
    const rooms = request.joinedRoomIds;
    // Bounded fan-out: a user in hundreds of rooms must not open hundreds of reads at once.
    for (let i = 0; i < rooms.length; i += MEMBER_READS_IN_FLIGHT) {
      const lists = await Promise.all(
        rooms.slice(i, i + MEMBER_READS_IN_FLIGHT).map((roomId) =>
          this.events.members(roomId, ["join"])
        ),
      );
      for (const list of lists) for (const m of list) visible.add(m.userId);
    }
    return visible;
  }
}
