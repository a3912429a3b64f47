/**
 * Who may see a room event, per m.room.history_visibility (client-server spec, "Room History
 * Visibility"). Pure: callers pass the visibility and the user's membership at the event.
 */
import { isJsonObject } from "./json.ts";

/** The four visibility settings. */
export type HistoryVisibility = "world_readable" | "shared" | "invited" | "joined";

/** The visibility an m.room.history_visibility content sets; the spec's default is `shared`. */
export function historyVisibilityOf(content: unknown): HistoryVisibility {
  const value = isJsonObject(content) ? content.history_visibility : undefined;
  switch (value) {
    case "world_readable":
    case "shared":
    case "invited":
    case "joined":
      return value;
    default:
      // An unknown value must not widen access, and `shared` is what an absent event means.
      return "shared";
  }
}

/** What the rule reads for one event and one user. */
export interface VisibilityFacts {
  /** The visibility in force at the event. */
  visibility: HistoryVisibility;
  /** The user's membership at the event (after it, if it is the user's own membership event). */
  membershipAtEvent: string | undefined;
  /** Whether the user joined the room at some point after the event (e.g. is joined now). */
  joinedLater: boolean;
}

/** Whether the user may see the event, by the spec's algorithm. */
export function mayViewEvent(facts: VisibilityFacts): boolean {
  if (facts.visibility === "world_readable") return true;
  if (facts.membershipAtEvent === "join") return true;
  if (facts.visibility === "shared" && facts.joinedLater) return true;
  if (facts.visibility === "invited" && facts.membershipAtEvent === "invite") return true;
  return false;
}

/**
 * The visibility that governs an event. An m.room.history_visibility event is shown under the
 * more permissive of its old and new setting, so members who could see either side see it.
 */
export function governingVisibility(
  before: HistoryVisibility,
  after: HistoryVisibility | undefined,
): HistoryVisibility {
  if (after === undefined) return before;
  return RANK[after] > RANK[before] ? after : before;
}

const RANK: Record<HistoryVisibility, number> = {
  joined: 0,
  invited: 1,
  shared: 2,
  world_readable: 3,
};
