/**
 * Push delivery: what the push outbox holds, and how one pusher's entries become Push Gateway
 * API requests (`POST {data.url}`, `/_matrix/push/v1/notify`). The notified event is read for
 * the pusher's owner through the read pipeline at send time, so a push never shows what
 * `/notifications` or `/messages` would not (history visibility, redactions, ignored users); an
 * event the owner has read by then is skipped, as Synapse's pushers skip read notifications.
 * Pushkeys the gateway `rejected` lose their pusher.
 */
import { stateKey } from "../protocol/events.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { OutboxAppend, OutboxEntry } from "../ports/outbox_store.ts";
import { OutboundError, type OutboundHttp } from "../ports/outbound_http.ts";
import type { NotificationEntry } from "../ports/notification_store.ts";
import type { RoomUnreadCounts } from "../ports/notification_store.ts";
import { roomVersion } from "../protocol/room_versions.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import type { DeliveryOutcome } from "../outbox/outbox_worker.ts";
import type { PushAction } from "./push_rules.ts";
import type { Pusher } from "./pushers.ts";
import type { PusherService } from "./pusher_service.ts";

/** The outbox stream kind of push notifications. */
export const PUSH_STREAM = "push";

/** A push outbox entry: one notification of one user, or a badge update (counts only). */
export type PushPayload =
  | {
    kind: "event";
    user_id: string;
    room_id: string;
    event_id: string;
    position: number;
    thread_id: string;
    actions: JsonValue[];
  }
  | { kind: "badge"; user_id: string };

/**
 * The outbox entries of `entries` for the HTTP pushers of their users (pusher ID = destination).
 * Other kinds (email) have no sender here and get nothing queued.
 */
export function pushAppends(
  entries: readonly NotificationEntry[],
  pushers: ReadonlyMap<string, readonly Pusher[]>,
): OutboxAppend[] {
  const out: OutboxAppend[] = [];
  for (const e of entries) {
    for (const p of pushers.get(e.userId) ?? []) {
      if (p.kind !== "http") continue;
      const payload: PushPayload = {
        kind: "event",
        user_id: e.userId,
        room_id: e.roomId,
        event_id: e.eventId,
        position: e.position,
        thread_id: e.threadId,
        actions: e.actions as JsonValue[],
      };
      out.push({ destination: p.id, order: [e.ts, e.roomId, e.position], payload });
    }
  }
  return out;
}

/** A badge update for each of `pushers` (after a read receipt moved the user's counts). */
export function badgeAppends(userId: string, pushers: readonly Pusher[], now: number) {
  const payload: PushPayload = { kind: "badge", user_id: userId };
  return pushers.filter((p) => p.kind === "http")
    .map((p): OutboxAppend => ({ destination: p.id, order: [now, "", 0], payload }));
}

/** What delivery reads. */
export interface PushDeliveryDeps {
  pushers: PusherService;
  store: EventReader;
  pipeline: ReadPipeline;
  http: OutboundHttp;
  /** The user's unread counts per room (after their receipts). */
  counts(userId: string, roomIds: readonly string[]): Promise<Map<string, RoomUnreadCounts>>;
  /** Where the user has read up to in a room's thread (log position). */
  readUpTo(userId: string, roomId: string, threadId: string): Promise<number>;
}

/** Turns a pusher's outbox entries into push gateway requests. */
export class PushDelivery {
  /** Delivery over the pushers, events, the read pipeline and the outbound HTTP guard. */
  constructor(private readonly deps: PushDeliveryDeps) {}

  /** The outbox worker's `deliver`: send `entries` of pusher `pusherId`, in order. */
  async deliver(pusherId: string, entries: OutboxEntry[]): Promise<DeliveryOutcome> {
    const userId = (entries[0].payload as PushPayload).user_id;
    const pusher = (await this.deps.pushers.list(userId)).find((p) => p.id === pusherId);
    if (!pusher || pusher.kind !== "http") return { done: 0, gone: true };
    let done = 0;
    for (const entry of entries) {
      const payload = entry.payload as PushPayload;
      const body = payload.kind === "badge"
        ? await this.#badgeNotification(userId, pusher)
        : await this.#eventNotification(pusher, payload);
      if (body !== null) {
        const sent = await this.#post(userId, pusher, body);
        if (sent === "failed") return { done, failed: true };
        if (sent === "rejected") return { done: done + 1, gone: true };
      }
      done++;
    }
    return { done };
  }

  /** One request; a refused URL (a private address) can never work, so it counts as sent. */
  async #post(
    userId: string,
    pusher: Pusher,
    body: JsonObject,
  ): Promise<"sent" | "failed" | "rejected"> {
    let response;
    try {
      response = await this.deps.http.request(pusher.data.url as string, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      if (error instanceof OutboundError && error.failure === "refused") {
        console.warn("push gateway refused", pusher.data.url, error.message);
        return "sent";
      }
      console.warn("push gateway unreachable", pusher.data.url, String(error));
      return "failed";
    }
    if (response.status < 200 || response.status >= 300) return "failed";
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(response.text);
    } catch {
      // A gateway answering 200 with no JSON still took the notification.
    }
    const rejected = isJsonObject(parsed) && Array.isArray(parsed.rejected) ? parsed.rejected : [];
    if (rejected.includes(pusher.pushkey)) {
      await this.deps.pushers.remove(userId, (p) => p.id === pusher.id);
      return "rejected";
    }
    return "sent";
  }

  async #eventNotification(
    pusher: Pusher,
    payload: Extract<PushPayload, { kind: "event" }>,
  ): Promise<JsonObject | null> {
    const { store, pipeline } = this.deps;
    const userId = payload.user_id;
    const readUpTo = await this.deps.readUpTo(userId, payload.room_id, payload.thread_id);
    if (payload.position <= readUpTo) return null;
    const [stored, head] = await Promise.all([
      store.getEvent(payload.event_id),
      store.roomHead(payload.room_id),
    ]);
    const version = roomVersion(head?.roomVersion ?? "");
    if (!stored || !version) return null;
    const read = await pipeline.readRoom(
      { reader: { userId }, roomId: payload.room_id, version },
      { timeline: [stored] },
    );
    const event = read.timeline[0];
    if (!event) return null;
    const tweaks = tweaksOf(payload.actions as PushAction[]);
    const prio = event.type === "m.room.encrypted" || tweaks.highlight === true ||
        tweaks.sound !== undefined
      ? "high"
      : "low";
    const counts = { unread: await this.#badge(userId) };
    const device = devicePart(pusher);
    if (pusher.data.format === "event_id_only") {
      return {
        notification: {
          event_id: payload.event_id,
          room_id: payload.room_id,
          counts,
          prio,
          devices: [device],
        },
      };
    }
    const notification: JsonObject = {
      id: payload.event_id,
      event_id: payload.event_id,
      room_id: payload.room_id,
      type: event.type as string,
      sender: event.sender as string,
      prio,
      counts,
      devices: [{ ...device, tweaks }],
    };
    if (isJsonObject(event.content) && Object.keys(event.content).length > 0) {
      notification.content = event.content;
    }
    if (event.type === "m.room.member" && typeof event.state_key === "string") {
      const membership = isJsonObject(event.content) ? event.content.membership : undefined;
      if (typeof membership === "string") notification.membership = membership;
      notification.user_is_target = event.state_key === userId;
    }
    Object.assign(notification, await this.#roomContext(payload.room_id, event.sender as string));
    return { notification };
  }

  async #badgeNotification(userId: string, pusher: Pusher): Promise<JsonObject> {
    return {
      notification: {
        id: "",
        type: null,
        sender: "",
        counts: { unread: await this.#badge(userId) },
        devices: [devicePart(pusher)],
      },
    };
  }

  /**
   * The badge: rooms with unread notifications plus pending invites, as Synapse counts it by
   * default (group_by_room).
   */
  async #badge(userId: string): Promise<number> {
    const rooms = await this.deps.store.roomsOfUser(userId, ["join", "invite"]);
    const joined = rooms.filter((r) => r.membership === "join").map((r) => r.roomId);
    const counts = await this.deps.counts(userId, joined);
    let unread = rooms.length - joined.length;
    for (const c of counts.values()) if (c.notification_count > 0) unread++;
    return unread;
  }

  /** The room's name (its name, else its canonical alias) and the sender's display name. */
  async #roomContext(roomId: string, sender: string): Promise<JsonObject> {
    const { store } = this.deps;
    const keys = [
      stateKey("m.room.name", ""),
      stateKey("m.room.canonical_alias", ""),
      stateKey("m.room.member", sender),
    ];
    const ids = await store.currentStateEventIds(roomId, keys);
    const events = await store.getEvents([...ids.values()]);
    const contentOf = (key: typeof keys[number]) => {
      const id = ids.get(key);
      return (id === undefined ? undefined : events.get(id)?.pdu.content) ?? {};
    };
    const out: JsonObject = {};
    const name = contentOf(keys[0]).name;
    const alias = contentOf(keys[1]).alias;
    if (typeof alias === "string" && alias !== "") out.room_alias = alias;
    if (typeof name === "string" && name !== "") out.room_name = name;
    else if (typeof alias === "string" && alias !== "") out.room_name = alias;
    const displayName = contentOf(keys[2]).displayname;
    if (typeof displayName === "string" && displayName !== "") {
      out.sender_display_name = displayName;
    }
    return out;
  }
}

/** The device entry of a request: the pusher's data without its URL (the gateway's own). */
function devicePart(pusher: Pusher): JsonObject {
  const { url: _url, ...data } = pusher.data;
  return {
    app_id: pusher.app_id,
    pushkey: pusher.pushkey,
    pushkey_ts: Math.floor(pusher.pushkeyTs / 1000),
    data,
  };
}

/** The tweaks of a rule's actions: each `set_tweak` with its value (true when it has none). */
export function tweaksOf(actions: readonly PushAction[]): JsonObject {
  const tweaks: JsonObject = {};
  for (const a of actions) {
    if (isJsonObject(a) && typeof a.set_tweak === "string") {
      tweaks[a.set_tweak] = a.value === undefined ? true : a.value;
    }
  }
  return tweaks;
}
