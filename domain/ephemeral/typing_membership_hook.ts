/**
 * Ends a user's typing in a room when their membership there stops being `join` (a leave, kick or
 * ban, local or from another server), after the member event's commit: a departed member must not
 * go on showing as typing until the timeout, and other servers hear that a local user stopped.
 */
import type { AppendedEvent } from "../ports/event_store.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import type { JsonObject } from "../protocol/json.ts";
import { serverNameOf } from "../protocol/auth_context.ts";
import type { TypingService } from "./typing_service.ts";

/** What the hook calls. */
export interface TypingMembershipDeps {
  typing: Pick<TypingService, "membershipEnded">;
  serverName: string;
  log?: (message: string, ...details: unknown[]) => void;
}

/** The event hook (see the module comment). */
export class TypingMembershipHook implements LocalEventHook {
  /** Over the typing service. */
  constructor(private readonly deps: TypingMembershipDeps) {}

  prepare(
    event: { roomId: string; pdu: { type: string; state_key?: string; content: JsonObject } },
  ): Promise<PreparedEventWrites | undefined> {
    const { roomId, pdu } = event;
    if (pdu.type !== "m.room.member" || typeof pdu.state_key !== "string") {
      return Promise.resolve(undefined);
    }
    if (pdu.content.membership === "join") return Promise.resolve(undefined);
    const userId = pdu.state_key;
    return Promise.resolve({
      writes: () => [],
      weight: 0,
      afterCommit: async (appended: AppendedEvent) => {
        if (appended.status !== "accepted" || appended.duplicate) return;
        try {
          const local = serverNameOf(userId) === this.deps.serverName;
          await this.deps.typing.membershipEnded(userId, roomId, local);
        } catch (error) {
          // The typing still expires on its own; a leave must not fail on it.
          (this.deps.log ?? console.warn)("typing: not ended on leave", roomId, error);
        }
      },
    });
  }
}
