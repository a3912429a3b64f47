/**
 * Presence: online, unavailable or offline with an optional status message, set explicitly or
 * by a sync's `set_presence`, and the `m.presence` view clients get. Local users' visible
 * changes also go to the servers sharing a room with them (`federate`), and remote users'
 * presence their servers send is stored here too (`applyRemote`).
 *
 * Inactivity, without timers (a timer in one process goes stale when another serves the user):
 * - other servers resend their online users' presence every 25 minutes, so a remote user whose
 *   server stayed silent for 30 is shown offline, decided when read (`presenceContent`);
 * - our own resend rides on the user's syncs: a sync finding the last send 25 minutes old sends
 *   again, so a user who keeps syncing stays online elsewhere and one whose client went away
 *   drops to offline there half an hour later.
 * Left out: Synapse's own-user timeouts (offline 30 s after the last sync, unavailable after
 * 5 idle minutes) need a timer per user or a sweeper; a local user stays as last set.
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
/** A local user's unchanged presence is sent to other servers again this long after the last. */
export const FEDERATION_RESEND_MS = 25 * 60_000;
/** A remote user whose server said nothing for this long is shown offline (Synapse: 30 min). */
export const FEDERATION_TIMEOUT_MS = 30 * 60_000;
/**
 * A remote user's unchanged presence is stored again (moving `receivedTs`) only when the stored
 * copy is this old: far below the gap between resends and the timeout (25 and 30 minutes).
 */
export const REMOTE_REWRITE_MS = 60_000;

/** What the service is built from. */
export interface PresenceServiceDeps {
  store: PresenceStore;
  /** Current memberships, read per request: who may see whose presence. */
  events: Pick<EventReader, "roomsOfUser">;
  /** Wakes syncs of the user and of everyone sharing a room with them. */
  notifyPresence?: (userId: string) => void;
  /**
   * Sends a local user's presence to the servers sharing a room with them (absent: presence
   * stays on this server). Called after the record's commit; a failure is logged, not thrown:
   * the change is stored and local clients see it, and the next change or resend carries it.
   */
  federate?: (record: PresenceRecord) => Promise<void>;
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
    const now = this.#now();
    const record: PresenceRecord = { userId, presence };
    if (statusMsg) record.statusMsg = statusMsg;
    const lastActive = presence === "online" ? now : current?.lastActiveTs;
    if (lastActive !== undefined) record.lastActiveTs = lastActive;
    // Setting what other servers already show sends nothing (Synapse's rule, roughly).
    const send = visiblyChanged(current, record, now) || this.#resendDue(current, now);
    this.#stampFederated(record, current, send, now);
    await this.deps.store.put(record, { wake: true });
    this.deps.notifyPresence?.(userId);
    if (send) await this.#federate(record);
  }

  /**
   * Mark a syncing user: `set_presence` of the sync (default "online"); "offline" leaves the
   * stored state alone, as the spec asks. Writes only when something visible changes, the
   * last-active time is a minute old, or other servers are due a resend.
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
    const changed = current?.presence !== presence;
    // A syncing user's presence is resent before other servers time it out; the check costs
    // nothing (the record is read anyway) and the resend at most one write per 25 minutes.
    const resend = this.#resendDue(current, now);
    if (!changed && (presence !== "online" || !stale) && !resend) return;
    const record: PresenceRecord = { userId, presence };
    if (current?.statusMsg) record.statusMsg = current.statusMsg;
    const lastActive = presence === "online" ? now : current?.lastActiveTs;
    if (lastActive !== undefined) record.lastActiveTs = lastActive;
    // A refresh of the last-active time alone is not sent: the user stayed active throughout,
    // and a transaction per syncing user per minute to every server sharing a room is waste.
    const send = changed || resend;
    this.#stampFederated(record, current, send, now);
    await this.deps.store.put(record, { wake: changed });
    if (changed) this.deps.notifyPresence?.(userId);
    if (send) await this.#federate(record);
  }

  /**
   * Store a remote user's presence as their server sent it (the EDU handler checked that the
   * server speaks for the user and shares a room with us). A visible change is written and
   * wakes syncs; the same presence again is written only once the stored copy is
   * `REMOTE_REWRITE_MS` old, so a resend still moves `receivedTs` on (the 30-minute timeout
   * counts from it) while a server repeating itself costs no write per EDU.
   */
  async applyRemote(record: PresenceRecord): Promise<void> {
    const current = await this.deps.store.get(record.userId);
    const now = this.#now();
    const changed = visiblyChanged(current, record, now);
    if (!changed && now - (current?.receivedTs ?? -Infinity) < REMOTE_REWRITE_MS) return;
    await this.deps.store.put(record, { wake: changed });
    if (changed) this.deps.notifyPresence?.(record.userId);
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

  /** Whether other servers were last told of a non-offline user long enough ago to resend. */
  #resendDue(current: PresenceRecord | null, now: number): boolean {
    if (this.deps.federate === undefined || current === null) return false;
    if (current.presence === "offline") return false;
    return current.federatedTs === undefined || now - current.federatedTs >= FEDERATION_RESEND_MS;
  }

  /** Carry the resend clock over, or start it again when this write is sent. */
  #stampFederated(
    record: PresenceRecord,
    current: PresenceRecord | null,
    send: boolean,
    now: number,
  ): void {
    if (send && this.deps.federate !== undefined) record.federatedTs = now;
    else if (current?.federatedTs !== undefined) record.federatedTs = current.federatedTs;
  }

  async #federate(record: PresenceRecord): Promise<void> {
    if (this.deps.federate === undefined) return;
    try {
      await this.deps.federate(record);
    } catch (error) {
      console.warn("presence: not sent to other servers", record.userId, error);
    }
  }
}

/**
 * Whether `next` shows differently from `current` to someone else: state, status message or
 * `currently_active` (not the last-active time alone, which moves all the time). No record
 * shows as offline without a message.
 */
export function visiblyChanged(
  current: PresenceRecord | null,
  next: PresenceRecord,
  now: number,
): boolean {
  const before = presenceContent(current ?? { userId: next.userId, presence: "offline" }, now);
  const after = presenceContent(next, now);
  return before.presence !== after.presence || before.status_msg !== after.status_msg ||
    before.currently_active !== after.currently_active;
}

/**
 * The content of an `m.presence` event (and of `GET /presence/{userId}/status`). A remote user
 * whose server went silent past `FEDERATION_TIMEOUT_MS` shows as offline.
 */
export function presenceContent(record: PresenceRecord, now: number): JsonObject {
  const timedOut = record.receivedTs !== undefined &&
    now - record.receivedTs >= FEDERATION_TIMEOUT_MS;
  const presence: PresenceState = timedOut ? "offline" : record.presence;
  const content: JsonObject = { presence };
  if (record.lastActiveTs !== undefined) {
    const ago = Math.max(0, now - record.lastActiveTs);
    content.last_active_ago = ago;
    content.currently_active = presence === "online" &&
      (record.currentlyActive ?? ago < CURRENTLY_ACTIVE_MS);
  } else {
    content.currently_active = presence === "online" && record.currentlyActive === true;
  }
  if (record.statusMsg !== undefined) content.status_msg = record.statusMsg;
  return content;
}
