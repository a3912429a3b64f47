/**
 * `m.typing` EDUs both ways (`{room_id, user_id, typing}`).
 *
 * Out: a local user's typing goes to every other server with a member joined to the room when
 * it starts and when it stops; not when it expires (each receiver expires it itself). The EDU
 * also carries `timeout` (ms), which the spec does not define and other servers ignore, so a
 * Tessera receiver expires it when the sender does. A client keeps typing alive by setting it
 * again; that is sent on only when the receivers' copy would run out soon, so a client
 * refreshing on every keystroke costs one EDU per destination about every 20 s, not one per key.
 *
 * In: each EDU names one user; it is dropped unless the user is the sending server's, the room
 * passes `RoomEduGate` (we are in it, the sender has a member joined, the ACL allows it) and the
 * user is joined (a stop is taken from a user who has left: it only clears their typing). The
 * typing lasts the EDU's `timeout`, or 60 s when it has none: Synapse's receivers hold it that
 * long and its senders repeat a start every 40 s while the user types, then send a stop, so a
 * shorter hold would make a Synapse user's typing blink off between its repeats.
 */
import type { EventReader } from "../../ports/event_store.ts";
import type { JsonObject } from "../../protocol/json.ts";
import type {
  LocalTypingChange,
  TypingFederation,
  TypingService,
} from "../../ephemeral/typing_service.ts";
import type { EduHandler } from "../edu_input.ts";
import type { FederationSender } from "../federation_sender.ts";
import { isRoomIdString, isUserOf, RoomEduGate, type RoomEduGateDeps } from "./room_edu_checks.ts";

/** The EDU type. */
export const TYPING_EDU = "m.typing";

/** How long remote typing lasts when its EDU names no timeout (Synapse's hold, see above). */
export const DEFAULT_REMOTE_TYPING_MS = 60_000;
/** Longest remote typing honoured from an EDU's `timeout`. */
export const MAX_REMOTE_TYPING_MS = 60_000;
/** A refresh is sent on when the receivers' copy would expire within this (or half its life). */
const REFRESH_MARGIN_MS = 10_000;
/** How long after a start a receiver may still show it (the longest hold above). */
const RECEIVER_HOLD_MS = 60_000;
/** Starts remembered in this process before old ones are pruned. */
const MAX_REMEMBERED_STARTS = 4_096;

/** What the outbound side is built from. */
export interface TypingEduSenderDeps {
  store: Pick<EventReader, "serversInRoom">;
  serverName: string;
  sender: Pick<FederationSender, "sendEdus">;
  now?: () => number;
  log?: (message: string, ...details: unknown[]) => void;
}

/**
 * Sends local users' typing to the room's other servers (the `TypingService` federation hook).
 * It remembers in this process when it last sent a start for a user in a room; the memory only
 * saves EDUs: a process that has none (another isolate sent the start) sends one more.
 */
export class TypingEduSender implements TypingFederation {
  /** [roomId, userId] -> when a start was sent and when its receivers' copy expires. */
  readonly #starts = new Map<string, { sentAt: number; expiresAt: number }>();

  /** Over the room-servers projection and the federation outbox. */
  constructor(private readonly deps: TypingEduSenderDeps) {}

  async typingChanged(change: LocalTypingChange): Promise<void> {
    const { roomId, userId, typing, timeoutMs } = change;
    const now = this.#now();
    const key = JSON.stringify([roomId, userId]);
    const start = this.#starts.get(key);
    if (typing) {
      const refreshDue = start === undefined ||
        start.expiresAt - now < Math.min(REFRESH_MARGIN_MS, timeoutMs / 2);
      if (change.wasTyping && !refreshDue) return;
      this.#remember(key, { sentAt: now, expiresAt: now + timeoutMs }, now);
    } else {
      this.#starts.delete(key);
      // Stopped (or expired here but perhaps still shown by a receiver holding it longer).
      if (!change.wasTyping && (start === undefined || now - start.sentAt >= RECEIVER_HOLD_MS)) {
        return;
      }
    }
    const content: JsonObject = { room_id: roomId, user_id: userId, typing };
    if (typing) content.timeout = timeoutMs;
    try {
      const servers = await this.deps.store.serversInRoom(roomId);
      const entries = [...servers.keys()]
        .filter((server) => server !== this.deps.serverName)
        .map((destination) => ({ destination, edu: { edu_type: TYPING_EDU, content } }));
      if (entries.length > 0) await this.deps.sender.sendEdus(entries);
    } catch (error) {
      // Typing is best effort: the client's request has done its part already.
      this.#starts.delete(key);
      (this.deps.log ?? console.warn)("federation: queueing typing failed", roomId, error);
    }
  }

  #remember(key: string, start: { sentAt: number; expiresAt: number }, now: number): void {
    this.#starts.delete(key);
    this.#starts.set(key, start);
    if (this.#starts.size <= MAX_REMEMBERED_STARTS) return;
    for (const [k, s] of this.#starts) {
      if (now - s.sentAt >= RECEIVER_HOLD_MS || this.#starts.size > MAX_REMEMBERED_STARTS) {
        this.#starts.delete(k);
      }
    }
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}

/** What the inbound side is built from. */
export interface TypingEduHandlerDeps extends RoomEduGateDeps {
  typing: Pick<TypingService, "setRemoteTyping">;
}

/** Handles inbound `m.typing` EDUs (see the module comment). */
export class TypingEduHandler implements EduHandler {
  readonly #gate: RoomEduGate;

  /** Over the room checks and the typing service. */
  constructor(private readonly deps: TypingEduHandlerDeps) {
    this.#gate = new RoomEduGate(deps);
  }

  async handle(origin: string, content: JsonObject): Promise<void> {
    const { room_id: roomId, user_id: userId, typing } = content;
    if (!isRoomIdString(roomId) || typeof typing !== "boolean") return;
    if (!isUserOf(origin, userId)) return;
    if (!(await this.#gate.roomAdmits(origin, roomId))) return;
    if (typing && !(await this.#gate.isJoined(roomId, userId))) return;
    await this.deps.typing.setRemoteTyping(userId, roomId, typing, remoteTimeout(content.timeout));
  }
}

/** The EDU's `timeout` when it is a usable number of ms, bounded; else the default hold. */
export function remoteTimeout(timeout: unknown): number {
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0) {
    return DEFAULT_REMOTE_TYPING_MS;
  }
  return Math.min(Math.floor(timeout), MAX_REMOTE_TYPING_MS);
}
