/**
 * Presence across servers: `m.presence` EDUs (`{push: [{user_id, presence, last_active_ago,
 * currently_active, status_msg?}]}`).
 *
 * Out (`PresenceFederation`): a local user's changed presence goes to every server sharing a
 * room with them; and, as Synapse does, a join brings presence a server lacks: a local user's
 * join sends their presence to the room's other servers, a server's first member joining gets
 * the presence of the room's local members.
 *
 * In (`PresenceEduHandler`): each entry must name a user of the sending server who shares a
 * room with us; malformed entries are dropped one by one, and an EDU is read up to
 * `MAX_PRESENCE_PER_EDU` entries. Stored through the presence service, which wakes the syncs
 * of local users sharing a room with them.
 *
 * There is no presence switch in the configuration: presence always flows; with federation
 * off nothing is sent (the sender drops EDUs) and no transaction is accepted.
 */
import type { AppendedEvent, EventReader } from "../../ports/event_store.ts";
import type { PresenceRecord, PresenceState, PresenceStore } from "../../ports/presence_store.ts";
import type { LocalEventHook, PreparedEventWrites } from "../../local_event_sender.ts";
import type { EduHandler } from "../edu_input.ts";
import type { Edu } from "../federation_transactions.ts";
import type { FederationSender } from "../federation_sender.ts";
import { isJsonObject, type JsonObject } from "../../protocol/json.ts";
import { parseUserId } from "../../protocol/identifiers.ts";
import { serverNameOf } from "../../protocol/auth_context.ts";
import { serversSharingRoomWith, userSharesRoomWithServer } from "../room_sharing.ts";
import { membershipOf } from "../../ephemeral/membership_checks.ts";
import {
  MAX_STATUS_MSG_LENGTH,
  presenceContent,
  type PresenceService,
} from "../../ephemeral/presence_service.ts";

/** Entries of one inbound EDU acted on; the rest are dropped (each costs reads and a write). */
export const MAX_PRESENCE_PER_EDU = 256;
/**
 * Entries per outbound EDU: with status messages of 1024 characters, a few KiB each, this
 * keeps one EDU well inside a KV value (64 KiB) in the outbox.
 */
export const PRESENCE_PER_OUTBOUND_EDU = 8;
/**
 * Local members whose presence a newly joined server is sent: a room with more local members
 * than this sends the first ones; the rest reach that server with their next change or resend.
 */
export const MAX_PRESENCE_ON_SERVER_JOIN = 1000;

const PRESENCE_STATES: ReadonlySet<string> = new Set(["online", "unavailable", "offline"]);
const MAX_USER_ID_LENGTH = 255;

/** What outbound presence is built from. */
export interface PresenceFederationDeps {
  events: Pick<
    EventReader,
    | "roomsOfUser"
    | "serversInRoom"
    | "isServerInRoom"
    | "members"
    | "currentStateEventId"
    | "getEvent"
  >;
  /** Current presence of local users (for joins). */
  presence: Pick<PresenceStore, "get" | "getMany">;
  sender: Pick<FederationSender, "sendEdus">;
  serverName: string;
  /** Federation on (`TESSERA_FEDERATION`): when off, nothing is read or queued. */
  enabled?: boolean;
  now?: () => number;
}

/**
 * Sends local users' presence to other servers, and is the event hook that sends it on joins.
 * Everything is read from KV per call; nothing is cached.
 */
export class PresenceFederation implements LocalEventHook {
  /** Build over the event reads, the presence store and the federation sender. */
  constructor(private readonly deps: PresenceFederationDeps) {}

  /**
   * Send a local user's presence to every server sharing a room with them (the presence
   * service's `federate`). A crash between the presence commit and this queueing loses the
   * EDU; the next change or resend (25 minutes) carries the state again.
   */
  async send(record: PresenceRecord): Promise<void> {
    if (!this.#enabled()) return;
    const servers = await serversSharingRoomWith(
      this.deps.events,
      record.userId,
      this.deps.serverName,
    );
    await this.#queue([...servers], [record]);
  }

  /**
   * A local user joined `roomId` (through the local sender, or a remote join completing): the
   * room's other servers get their presence. One who never set presence is offline, which is
   * what other servers assume anyway: nothing to send.
   */
  async userJoined(userId: string, roomId: string): Promise<void> {
    if (!this.#enabled()) return;
    const record = await this.deps.presence.get(userId);
    if (record === null) return;
    const servers = await this.deps.events.serversInRoom(roomId);
    servers.delete(this.deps.serverName);
    await this.#queue([...servers.keys()], [record]);
  }

  /** A server's first member joined `roomId`: it gets the presence of the room's local members. */
  async serverJoined(server: string, roomId: string): Promise<void> {
    if (!this.#enabled() || server === this.deps.serverName) return;
    const local = (await this.deps.events.members(roomId, ["join"]))
      .filter((m) => serverNameOf(m.userId) === this.deps.serverName)
      .slice(0, MAX_PRESENCE_ON_SERVER_JOIN);
    const records = await this.deps.presence.getMany(local.map((m) => m.userId));
    await this.#queue([server], records);
  }

  /**
   * See LocalEventHook.prepare: a join that is new (not a profile change of a joined member)
   * sends presence once committed, for a local user's join or a remote server's first member.
   */
  async prepare(
    event: { roomId: string; pdu: { type: string; state_key?: string; content: JsonObject } },
  ): Promise<PreparedEventWrites | undefined> {
    const { roomId, pdu } = event;
    if (!this.#enabled() || pdu.type !== "m.room.member") return undefined;
    if (typeof pdu.state_key !== "string" || pdu.content.membership !== "join") return undefined;
    const userId = pdu.state_key;
    const server = serverNameOf(userId);
    const local = server === this.deps.serverName;
    // Read before the commit: whether this join changes anything presence cares about.
    const already = local
      ? await membershipOf(this.deps.events, roomId, userId) === "join"
      : await this.deps.events.isServerInRoom(roomId, server);
    if (already) return undefined;
    return {
      writes: () => [],
      weight: 0,
      afterCommit: async (appended: AppendedEvent) => {
        if (appended.status !== "accepted" || appended.duplicate) return;
        try {
          if (local) await this.userJoined(userId, roomId);
          else await this.serverJoined(server, roomId);
        } catch (error) {
          // Presence is not worth failing a join for; the next change or resend carries it.
          console.warn("presence: not sent on a join", roomId, userId, error);
        }
      },
    };
  }

  async #queue(servers: readonly string[], records: readonly PresenceRecord[]): Promise<void> {
    if (servers.length === 0 || records.length === 0) return;
    const now = this.deps.now?.() ?? Date.now();
    const edus: Edu[] = [];
    for (let i = 0; i < records.length; i += PRESENCE_PER_OUTBOUND_EDU) {
      const push = records.slice(i, i + PRESENCE_PER_OUTBOUND_EDU)
        .map((record) => presencePush(record, now));
      edus.push({ edu_type: "m.presence", content: { push } });
    }
    await this.deps.sender.sendEdus(
      servers.flatMap((destination) => edus.map((edu) => ({ destination, edu }))),
    );
  }

  #enabled(): boolean {
    return this.deps.enabled ?? true;
  }
}

/**
 * One `push` entry for a local user's record. `last_active_ago` is left out for a user never
 * active (set unavailable or offline without ever being online): the schema asks for it, but
 * any number would be made up, and receivers (Synapse, us) take it as optional.
 */
export function presencePush(record: PresenceRecord, now: number): JsonObject {
  return { user_id: record.userId, ...presenceContent(record, now) };
}

/** What the inbound handler is built from. */
export interface PresenceEduHandlerDeps {
  events: Pick<EventReader, "roomsOfUser" | "isServerInRoom">;
  presence: Pick<PresenceService, "applyRemote">;
  serverName: string;
  now?: () => number;
}

/** Handles inbound `m.presence` EDUs (see the module comment). */
export class PresenceEduHandler implements EduHandler {
  /** Build over membership reads and the presence service. */
  constructor(private readonly deps: PresenceEduHandlerDeps) {}

  /** See EduHandler.handle. */
  async handle(origin: string, content: JsonObject): Promise<void> {
    if (origin === this.deps.serverName || !Array.isArray(content.push)) return;
    const now = this.deps.now?.() ?? Date.now();
    // A user named twice is acted on once, as the last entry says (each costs reads and a write).
    const latest = new Map<string, PresenceRecord>();
    for (const entry of content.push.slice(0, MAX_PRESENCE_PER_EDU)) {
      const record = parsePresencePush(entry, origin, now);
      if (record === null) continue;
      latest.delete(record.userId);
      latest.set(record.userId, record);
    }
    for (const record of latest.values()) {
      // Presence of a user we share no room with is none of our business (and unbounded).
      if (
        !(await userSharesRoomWithServer(this.deps.events, record.userId, this.deps.serverName))
      ) {
        continue;
      }
      await this.deps.presence.applyRemote(record);
    }
  }
}

/**
 * One `push` entry from `origin` as a stored record received at `now`, or null when malformed
 * or about a user of another server.
 */
export function parsePresencePush(
  entry: unknown,
  origin: string,
  now: number,
): PresenceRecord | null {
  if (!isJsonObject(entry)) return null;
  const { user_id: userId, presence, last_active_ago: ago } = entry;
  if (typeof userId !== "string" || userId.length > MAX_USER_ID_LENGTH) return null;
  if (!parseUserId(userId).ok || serverNameOf(userId) !== origin) return null;
  if (typeof presence !== "string" || !PRESENCE_STATES.has(presence)) return null;
  const record: PresenceRecord = {
    userId,
    presence: presence as PresenceState,
    receivedTs: now,
  };
  if (ago !== undefined && ago !== null) {
    if (typeof ago !== "number" || !Number.isSafeInteger(ago) || ago < 0) return null;
    record.lastActiveTs = now - Math.min(ago, now);
  }
  const active = entry.currently_active;
  if (active !== undefined && active !== null && typeof active !== "boolean") return null;
  record.currentlyActive = active === true;
  const statusMsg = entry.status_msg;
  if (statusMsg !== undefined && statusMsg !== null) {
    if (typeof statusMsg !== "string" || statusMsg.length > MAX_STATUS_MSG_LENGTH) return null;
    if (statusMsg !== "") record.statusMsg = statusMsg;
  }
  return record;
}
