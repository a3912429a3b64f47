/**
 * Guests in rooms (spec: "Guest access"): a guest may join only a room whose
 * `m.room.guest_access` is `can_join`, its member events say `kind: "guest"`, and when a room
 * stops being open to guests its local guests leave it, as Synapse makes them.
 *
 * Guests are a local notion the auth rules know nothing of, so the join rule is a condition the
 * local sender checks on the state the join is authorised and committed on: a revocation that
 * another process commits first refuses the join. A join that commits first is seen by the
 * revocation's pass over the members, which runs after the revocation's commit.
 */
import { forbidden } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { LocalEventHook, StateCondition } from "../local_event_sender.ts";
import type { EventReader } from "../ports/event_store.ts";
import { isLocal } from "./room_services.ts";

/** The state event that opens a room to guests. */
export const GUEST_ACCESS_TYPE = "m.room.guest_access";

/** Whether a guest_access content lets guests join. */
export function guestsCanJoin(content: JsonObject | undefined): boolean {
  return content?.guest_access === "can_join";
}

/** The condition on a guest's join: the room must be open to guests. */
export const guestJoinCondition: StateCondition = {
  keys: [[GUEST_ACCESS_TYPE, ""]],
  refusal: (content) =>
    guestsCanJoin(content(GUEST_ACCESS_TYPE, ""))
      ? undefined
      : forbidden("Guest access not allowed"),
};

/** What the guest evictor needs. */
export interface GuestEvictorDeps {
  store: EventReader;
  serverName: string;
  /** Make a user leave a room (their own leave event). */
  leave(userId: string, roomId: string): Promise<void>;
}

/**
 * Makes local guests leave a room once its guest access is no longer `can_join`. It runs as a
 * hook of the local sender, after the revoking event is committed; the leaves are sent through
 * the same sender, whose queue for the room is still busy with the revoking event, so they are
 * started then and not awaited. They are not written down first: a process that dies before
 * sending them leaves those guests in the room (they can stay, but no guest can join).
 */
export class GuestEvictor implements LocalEventHook {
  readonly #running = new Set<Promise<void>>();

  /** Over the event reads and a way to make users leave. */
  constructor(private readonly deps: GuestEvictorDeps) {}

  /** See LocalEventHook.prepare: only a revoking guest_access event has follow-up work. */
  prepare(
    event: { roomId: string; pdu: { type: string; state_key?: string; content: JsonObject } },
  ) {
    const { pdu } = event;
    if (pdu.type !== GUEST_ACCESS_TYPE || pdu.state_key !== "" || guestsCanJoin(pdu.content)) {
      return Promise.resolve(undefined);
    }
    return Promise.resolve({
      writes: () => [],
      afterCommit: () => {
        const run = this.evict(event.roomId).catch((error) =>
          console.error("making guests leave failed", event.roomId, error)
        );
        this.#running.add(run);
        run.finally(() => this.#running.delete(run));
        return Promise.resolve();
      },
    });
  }

  /** Settles once the leaves started so far are done (for orderly shutdown and tests). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running);
  }

  /** Make every local guest joined to (or invited into) the room leave it. */
  async evict(roomId: string): Promise<void> {
    const members = (await this.deps.store.members(roomId, ["join", "invite"]))
      .filter((m) => isLocal(m.userId, this.deps.serverName));
    const events = await this.deps.store.getEvents(members.map((m) => m.eventId));
    for (const member of members) {
      if (events.get(member.eventId)?.pdu.content.kind !== "guest") continue;
      try {
        await this.deps.leave(member.userId, roomId);
      } catch (error) {
        console.error("a guest could not be made to leave", roomId, member.userId, error);
      }
    }
  }
}
