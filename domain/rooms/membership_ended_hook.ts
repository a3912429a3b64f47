/**
 * An event hook for work that must follow a member's leaving `join` (a leave, kick or ban, local
 * or from another server; a rejected invite or withdrawn knock too): once the member event's
 * commit has landed accepted, `onEnded(roomId, userId)` runs, before the sender is answered. It
 * writes nothing into the event's commit, and its failure is logged, never the send's: what it
 * does (ending typing, dropping a cache) has a slower way of happening anyway.
 */
import type { AppendedEvent } from "../ports/event_store.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import type { JsonObject } from "../protocol/json.ts";

/** Runs `onEnded` after each accepted member event that is not a join. */
export class MembershipEndedHook implements LocalEventHook {
  /** `failure` prefixes the log line when `onEnded` throws. */
  constructor(
    private readonly onEnded: (roomId: string, userId: string) => Promise<unknown>,
    private readonly failure: string,
    private readonly log: (message: string, ...details: unknown[]) => void = console.warn,
  ) {}

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
          await this.onEnded(roomId, userId);
        } catch (error) {
          this.log(this.failure, roomId, error);
        }
      },
    });
  }
}
