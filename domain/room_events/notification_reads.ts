/**
 * `GET /notifications`: the events the user was notified about, newest first, each through the
 * read pipeline (history visibility, redactions, ignored users, client format), so a
 * notification never shows what /messages would not.
 */
import type { JsonObject } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { NotificationStore } from "../ports/notification_store.ts";
import { roomVersion } from "../protocol/room_versions.ts";
import type { PipelineReader, ReadPipeline } from "./read_pipeline.ts";

/** Where a user has read up to in a room, per thread. */
export interface ReadPoints {
  thread(threadId: string): Promise<number>;
}

/** What notification reads need. */
export interface NotificationReadsDeps {
  notifications: Pick<NotificationStore, "page">;
  store: EventReader;
  pipeline: ReadPipeline;
  readPoints(userId: string, roomId: string): Promise<ReadPoints>;
}

/** One page of `GET /notifications`. */
export interface NotificationsPage {
  notifications: JsonObject[];
  next_token?: string;
}

/** Reads of the notification list. */
export class NotificationReads {
  /** Over the notification store, the events and the read pipeline (required). */
  constructor(private readonly deps: NotificationReadsDeps) {}

  /** A page, newest first; notifications whose event the pipeline drops are left out. */
  async page(
    reader: PipelineReader,
    options: { from?: string; limit: number; onlyHighlight: boolean },
  ): Promise<NotificationsPage> {
    const { store, pipeline } = this.deps;
    const userId = reader.userId;
    const page = await this.deps.notifications.page(userId, options);
    const roomIds = [...new Set(page.entries.map((e) => e.roomId))];
    const [events, heads, readPoints, ignored] = await Promise.all([
      store.getEvents(page.entries.map((e) => e.eventId)),
      Promise.all(roomIds.map((r) => store.roomHead(r))),
      Promise.all(roomIds.map((r) => this.deps.readPoints(userId, r))),
      pipeline.ignoredUsers(userId),
    ]);
    const points = new Map(roomIds.map((r, i) => [r, readPoints[i]]));
    // One pipeline pass per room.
    const shown = new Map<string, JsonObject>();
    await Promise.all(roomIds.map(async (roomId, i) => {
      const version = roomVersion(heads[i]?.roomVersion ?? "");
      if (!version) return;
      const timeline = page.entries.filter((e) => e.roomId === roomId)
        .flatMap((e) => events.get(e.eventId) ?? []);
      const out = await pipeline.readRoom({ reader, roomId, version, ignored }, { timeline });
      out.timeline.forEach((event) => shown.set(event.event_id as string, event));
    }));
    const notifications: JsonObject[] = [];
    for (const entry of page.entries) {
      const found = shown.get(entry.eventId);
      if (!found) continue;
      const { room_id: _, ...event } = found;
      const readUpTo = await points.get(entry.roomId)!.thread(entry.threadId);
      notifications.push({
        actions: entry.actions as unknown as JsonObject[],
        event,
        // Rules are global (no device-scoped rules with profile tags exist): always null, as
        // in Synapse, which still sends the key.
        profile_tag: null,
        read: entry.position <= readUpTo,
        room_id: entry.roomId,
        ts: entry.ts,
      });
    }
    return page.next === undefined ? { notifications } : { next_token: page.next, notifications };
  }
}
