/**
 * The checks a room-scoped EDU (typing, receipts) passes before it is acted on: the server that
 * sent it speaks only for its own users, about rooms this server is in, where it has a member
 * joined and the room's server ACL lets it take part (spec: ACLs apply to typing and receipt
 * EDUs in `/send`); the user it names must be joined. Each check reads current state from KV,
 * so every process agrees with the room as it is now.
 */
import type { EventReader } from "../../ports/event_store.ts";
import { membershipOf } from "../../ephemeral/membership_checks.ts";
import { isValidRoomId, parseUserId } from "../../protocol/identifiers.ts";
import { RoomServerAcl } from "../server_acl.ts";

/** What the checks read. */
export interface RoomEduGateDeps {
  store: Pick<EventReader, "isServerInRoom" | "currentStateEventId" | "getEvent">;
  /** This server's name: EDUs about rooms it has left are dropped. */
  serverName: string;
}

/** Whether `userId` is a well-formed user ID of `origin` (an EDU may speak only for those). */
export function isUserOf(origin: string, userId: unknown): userId is string {
  if (typeof userId !== "string") return false;
  const parsed = parseUserId(userId);
  return parsed.ok && parsed.value.serverName === origin;
}

/** Whether `roomId` is a well-formed room ID. */
export function isRoomIdString(roomId: unknown): roomId is string {
  return typeof roomId === "string" && isValidRoomId(roomId);
}

/** Room-scoped EDU checks (see the module comment). */
export class RoomEduGate {
  readonly #acl: RoomServerAcl;

  /** Over the event store's current-state reads. */
  constructor(private readonly deps: RoomEduGateDeps) {
    this.#acl = new RoomServerAcl(deps.store);
  }

  /**
   * Whether `origin` may speak about `roomId`: this server is in the room (an old server may
   * still think we are), `origin` has a member joined, and the ACL allows `origin`.
   */
  async roomAdmits(origin: string, roomId: string): Promise<boolean> {
    const { store, serverName } = this.deps;
    const [ours, theirs] = await Promise.all([
      store.isServerInRoom(roomId, serverName),
      store.isServerInRoom(roomId, origin),
    ]);
    return ours && theirs && await this.#acl.allows(roomId, origin);
  }

  /** Whether `userId` is joined to `roomId` now. */
  async isJoined(roomId: string, userId: string): Promise<boolean> {
    return await membershipOf(this.deps.store, roomId, userId) === "join";
  }
}
