/**
 * Applying history visibility to stored events: reads the visibility and the viewer's
 * membership in the state before each event and asks domain/history_visibility.ts.
 */
import { stateKey } from "../events.ts";
import { governingVisibility, historyVisibilityOf, mayViewEvent } from "../history_visibility.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";

const HISTORY_VISIBILITY_KEY = stateKey("m.room.history_visibility", "");

/** A user's standing in a room now. */
export interface Viewer {
  userId: string;
  roomId: string;
  /** Current membership, undefined when the user never had one. */
  membership: string | undefined;
  /** The current membership event. */
  membershipEventId: string | undefined;
}

/** Filters events down to what a user may see. */
export class EventVisibility {
  /** Visibility over the store's state reads. */
  constructor(private readonly store: EventReader) {}

  /** The viewer's current membership in the room. */
  async viewer(userId: string, roomId: string): Promise<Viewer> {
    const eventId = await this.store.currentStateEventId(roomId, "m.room.member", userId);
    const event = eventId ? await this.store.getEvent(eventId) : null;
    const membership = event?.pdu.content.membership;
    return {
      userId,
      roomId,
      membership: typeof membership === "string" ? membership : undefined,
      membershipEventId: eventId ?? undefined,
    };
  }

  /** Whether the room's current history visibility is world_readable. */
  async worldReadable(roomId: string): Promise<boolean> {
    const id = await this.store.currentStateEventId(roomId, "m.room.history_visibility", "");
    const event = id ? await this.store.getEvent(id) : null;
    return historyVisibilityOf(event?.pdu.content) === "world_readable";
  }

  /** The events the viewer may see, in order. */
  async filter(viewer: Viewer, events: readonly StoredEvent[]): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const memberKey = stateKey("m.room.member", viewer.userId);
    const states = await Promise.all(
      events.map((e) => this.store.stateAtEvent(e.eventId, "before")),
    );
    const wanted = new Set<string>();
    for (const state of states) {
      const hv = state?.get(HISTORY_VISIBILITY_KEY);
      const member = state?.get(memberKey);
      if (hv) wanted.add(hv);
      if (member) wanted.add(member);
    }
    const found = await this.store.getEvents([...wanted]);
    // "Joined at some point after the event": approximated by being joined now, as Synapse does.
    const joinedLater = viewer.membership === "join";
    return events.filter((event, i) => {
      const state = states[i];
      const hvId = state?.get(HISTORY_VISIBILITY_KEY);
      let visibility = historyVisibilityOf(hvId ? found.get(hvId)?.pdu.content : undefined);
      const pdu = event.pdu;
      if (pdu.type === "m.room.history_visibility" && pdu.state_key === "") {
        visibility = governingVisibility(visibility, historyVisibilityOf(pdu.content));
      }
      // Users always see their own membership changes, such as the leave that ended their view.
      if (pdu.type === "m.room.member" && pdu.state_key === viewer.userId) return true;
      const memberId = state?.get(memberKey);
      const membership = memberId ? found.get(memberId)?.pdu.content.membership : undefined;
      return mayViewEvent({
        visibility,
        membershipAtEvent: typeof membership === "string" ? membership : undefined,
        joinedLater,
      });
    });
  }
}
