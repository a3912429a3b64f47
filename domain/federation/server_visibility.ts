/**
 * What another server may read of a room, the server-side counterpart of the client history
 * visibility rule (modelled on Synapse's `filter_events_for_server`):
 *
 * - Room access: a server reads a room's events, state and auth chains only while one of its
 *   users is joined to it (Synapse's `check_host_in_room`), or while the room is world-readable,
 *   where anyone may read its history anyway.
 * - Each event: under `shared` or `world_readable` history (or an unknown setting, which
 *   widens nothing: the spec's default `shared`), the server sees it, since it is in the room now.
 *   Under `invited` it needs a user invited or joined at the event, under `joined` a user joined
 *   at the event. "At the event" is the state after it, as Synapse reads it, so a server sees
 *   its own user's join; it sees every membership change of its own users (their leave too), as
 *   a client always sees its own. Outliers have no state of their own here: they are decided as
 *   `shared`.
 *
 * An event a server may not see still leaves, pruned to its redacted form (as Synapse does with
 * `redact=True`): servers need the DAG's shape to fill gaps. The read pipeline's server read
 * (`ReadPipeline.readForServer`) calls this as its first stage, then applies redactions and
 * erasure, then formats PDUs; no federation route formats events itself.
 */
import { stateKey } from "../protocol/events.ts";
import { historyVisibilityOf } from "../protocol/history_visibility.ts";
import type { HistoryVisibility } from "../protocol/history_visibility.ts";
import type { EventReader, EventStatus } from "../ports/event_store.ts";
import type { Pdu } from "../protocol/events.ts";

/** An event as a server read takes it: a timeline event (StoredEvent) or an outlier. */
export interface ServerReadEvent {
  eventId: string;
  roomId: string;
  pdu: Pdu;
  status: EventStatus;
  /** Held outside the room's timeline, without state of its own. */
  outlier?: boolean;
}

const HISTORY_VISIBILITY_KEY = stateKey("m.room.history_visibility", "");
const MEMBER_PREFIX = "m.room.member\u0000";

/** The server part of a user ID (everything after the first ':'), or undefined. */
export function serverOfUserId(userId: string): string | undefined {
  const colon = userId.indexOf(":");
  return colon < 0 ? undefined : userId.slice(colon + 1);
}

/**
 * Whether a server may see an event, given the visibility in force at it and the memberships
 * of that server's users at it (pure; see the module comment).
 */
export function serverMayViewEvent(
  visibility: HistoryVisibility,
  memberships: readonly string[],
): boolean {
  if (visibility !== "invited" && visibility !== "joined") return true;
  if (memberships.includes("join")) return true;
  return visibility === "invited" && memberships.includes("invite");
}

/** Room access and per-event visibility for remote servers, read from the event store. */
export class ServerVisibility {
  /** Over the event store's state and membership reads. */
  constructor(
    private readonly store: Pick<
      EventReader,
      "isServerInRoom" | "currentStateEventId" | "getEvent" | "getEvents" | "stateAtEvent"
    >,
  ) {}

  /**
   * Whether one of `serverName`'s users is joined to the room now: one read of the room servers
   * projection, whatever the room's size (every room-scoped federation read asks it).
   */
  serverInRoom(roomId: string, serverName: string): Promise<boolean> {
    return this.store.isServerInRoom(roomId, serverName);
  }

  /** Whether `serverName` may read the room at all: joined now, or the room is world-readable. */
  async mayReadRoom(roomId: string, serverName: string): Promise<boolean> {
    if (await this.serverInRoom(roomId, serverName)) return true;
    const id = await this.store.currentStateEventId(roomId, "m.room.history_visibility", "");
    const event = id ? await this.store.getEvent(id) : null;
    return historyVisibilityOf(event?.pdu.content) === "world_readable";
  }

  /**
   * The events `serverName` may not see by history visibility. One state read per event that is
   * not an outlier (the state groups behind it are shared and cached by the store), and the
   * server's member events only when some event's visibility is `invited` or `joined`.
   */
  async hiddenFrom(serverName: string, events: readonly ServerReadEvent[]): Promise<Set<string>> {
    const hidden = new Set<string>();
    const timeline = events.filter((e) => !e.outlier);
    if (timeline.length === 0) return hidden;
    const states = await Promise.all(
      timeline.map((e) => this.store.stateAtEvent(e.eventId, "after")),
    );
    const hvIds = new Set<string>();
    for (const state of states) {
      const id = state?.get(HISTORY_VISIBILITY_KEY);
      if (id !== undefined) hvIds.add(id);
    }
    const hvEvents = hvIds.size > 0 ? await this.store.getEvents([...hvIds]) : new Map();
    const restricted: {
      event: ServerReadEvent;
      visibility: HistoryVisibility;
      members: string[];
    }[] = [];
    const memberIds = new Set<string>();
    timeline.forEach((event, i) => {
      const { type, state_key } = event.pdu;
      if (type === "m.room.member" && serverOfUserId(state_key ?? "") === serverName) return;
      const hvId = states[i]?.get(HISTORY_VISIBILITY_KEY);
      const visibility = historyVisibilityOf(hvId ? hvEvents.get(hvId)?.pdu.content : undefined);
      if (visibility !== "invited" && visibility !== "joined") return;
      const members: string[] = [];
      for (const [key, id] of states[i] ?? []) {
        if (!key.startsWith(MEMBER_PREFIX)) continue;
        if (serverOfUserId(key.slice(MEMBER_PREFIX.length)) !== serverName) continue;
        members.push(id);
        memberIds.add(id);
      }
      restricted.push({ event, visibility, members });
    });
    if (restricted.length === 0) return hidden;
    const memberEvents = memberIds.size > 0
      ? await this.store.getEvents([...memberIds])
      : new Map();
    for (const { event, visibility, members } of restricted) {
      const memberships = members.flatMap((id) => {
        const m = memberEvents.get(id)?.pdu.content.membership;
        return typeof m === "string" ? [m] : [];
      });
      if (!serverMayViewEvent(visibility, memberships)) hidden.add(event.eventId);
    }
    return hidden;
  }
}
