/**
 * Presence: online, unavailable or offline with an optional status message, set explicitly or
 * by a sync's `set_presence`, and the `m.presence` view clients get.
 */
import { badJson, forbidden } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { PresenceRecord, PresenceState, PresenceStore } from "../ports/presence_store.ts";
import type { EventReader } from "../ports/event_store.ts";
import { sharesJoinedRoom } from "./membership_checks.ts";

/** A user counts as currently active this long after their last activity (Synapse: 60 s). */
export const CURRENTLY_ACTIVE_MS = 60_000;
/** A sync refreshes the stored last-active time at most this often: a write per sync is waste. */
export const LAST_ACTIVE_REFRESH_MS = 60_000;
/** Longest status message accepted. */
export const MAX_STATUS_MSG_LENGTH = 1024;

/** What the service is built from. */
export interface PresenceServiceDeps {
  store: PresenceStore;
  /** Current memberships, read per request: who may see whose presence. */
  events: Pick<EventReader, "roomsOfUser">;
  /** Wakes syncs of the user and of everyone sharing a room with them. */
  notifyPresence?: (userId: string) => void;
  now?: () => number;
}

/** Presence reads and writes. */
export class PresenceService {
  /** Build over a store. */
  constructor(private readonly deps: PresenceServiceDeps) {}

  /** `PUT /presence/{userId}/status` as `requester`. */
  async setStatus(
    requester: string,
    userId: string,
    presence: PresenceState,
    statusMsg?: string | null,
  ): Promise<void> {
    if (requester !== userId) throw forbidden("Cannot set another user's presence");
    if (statusMsg && statusMsg.length > MAX_STATUS_MSG_LENGTH) {
      throw badJson(`status_msg is over ${MAX_STATUS_MSG_LENGTH} characters`);
    }
    const current = await this.deps.store.get(userId);
    const record: PresenceRecord = { userId, presence };
    if (statusMsg) record.statusMsg = statusMsg;
    const lastActive = presence === "online" ? this.#now() : current?.lastActiveTs;
    if (lastActive !== undefined) record.lastActiveTs = lastActive;
    await this.deps.store.put(record);
    this.deps.notifyPresence?.(userId);
  }

  /**
   * Mark a syncing user: `set_presence` of the sync (default "online"); "offline" leaves the
   * stored state alone, as the spec asks. Writes only when something visible changes.
   */
  async markFromSync(userId: string, setPresence?: string): Promise<void> {
    // Anything but the spec's three states counts as the default, "online".
    const presence: PresenceState = setPresence === "offline" || setPresence === "unavailable"
      ? setPresence
      : "online";
    if (presence === "offline") return;
    const current = await this.deps.store.get(userId);
    const now = this.#now();
    const stale = current?.lastActiveTs === undefined ||
      now - current.lastActiveTs >= LAST_ACTIVE_REFRESH_MS;
    if (current?.presence === presence && (presence !== "online" || !stale)) return;
    const record: PresenceRecord = { userId, presence };
    if (current?.statusMsg) record.statusMsg = current.statusMsg;
    const lastActive = presence === "online" ? now : current?.lastActiveTs;
    if (lastActive !== undefined) record.lastActiveTs = lastActive;
    await this.deps.store.put(record);
    if (current?.presence !== presence) this.deps.notifyPresence?.(userId);
  }

  /**
   * `GET /presence/{userId}/status` as `requester`: offline for users who never set presence;
   * 403 unless the requester is the user or shares a joined room with them (the spec's 403,
   * Synapse's rule), so a status message is no broadcast to strangers.
   */
  async status(requester: string, userId: string): Promise<JsonObject> {
    if (requester !== userId && !(await sharesJoinedRoom(this.deps.events, requester, userId))) {
      throw forbidden("You are not allowed to see this user's presence");
    }
    const record = await this.deps.store.get(userId);
    return presenceContent(record ?? { userId, presence: "offline" }, this.#now());
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}

/** The content of an `m.presence` event (and of `GET /presence/{userId}/status`). */
export function presenceContent(record: PresenceRecord, now: number): JsonObject {
  const content: JsonObject = { presence: record.presence };
  if (record.lastActiveTs !== undefined) {
    const ago = Math.max(0, now - record.lastActiveTs);
    content.last_active_ago = ago;
    content.currently_active = record.presence === "online" && ago < CURRENTLY_ACTIVE_MS;
  } else {
    content.currently_active = false;
  }
  if (record.statusMsg !== undefined) content.status_msg = record.statusMsg;
  return content;
}
