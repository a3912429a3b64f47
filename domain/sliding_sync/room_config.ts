/**
 * A room's sliding-sync configuration (MSC4186 `required_state` and `timeline_limit`), as a
 * list or a room subscription asks for it, and the merge of several: a room in two lists and
 * a subscription is sent once, with the union of what each asked for.
 */
import { MAX_TIMELINE_LIMIT } from "../sync/room_stream.ts";

/** `required_state` state key meaning "any state key" (also usable as the type). */
export const WILDCARD = "*";
/** `required_state` state key meaning "the members who sent timeline events". */
export const LAZY = "$LAZY";
/** `required_state` state key meaning "the syncing user's ID". */
export const ME = "$ME";

/** Most `required_state` pairs one list or subscription may ask for. */
export const MAX_REQUIRED_STATE = 100;
/** Most timeline events one room may ask for (the same cap as /sync's filters). */
export const MAX_SLIDING_TIMELINE_LIMIT = MAX_TIMELINE_LIMIT;

/** What one room is sent with. */
export interface RoomConfig {
  /** `[event type, state key]` pairs; `*` wildcards, `$LAZY` and `$ME` state keys. */
  requiredState: [string, string][];
  /** Timeline events wanted, 0 to MAX_SLIDING_TIMELINE_LIMIT. */
  timelineLimit: number;
}

/** The config from a request's `required_state` and `timeline_limit`, limits applied. */
export function roomConfig(
  requiredState: readonly (readonly [string, string])[],
  timelineLimit: number,
): RoomConfig {
  return normalise({
    requiredState: requiredState.map(([t, k]) => [t, k]),
    timelineLimit,
  });
}

/** The union of several configs for one room: every pair asked, the largest timeline limit. */
export function mergeRoomConfigs(configs: readonly RoomConfig[]): RoomConfig {
  return normalise({
    requiredState: configs.flatMap((c) => c.requiredState),
    timelineLimit: Math.max(0, ...configs.map((c) => c.timelineLimit)),
  });
}

/** Whether two configs ask for the same thing (a change makes the room's next answer initial). */
export function sameRoomConfig(a: RoomConfig, b: RoomConfig): boolean {
  const x = normalise(a);
  const y = normalise(b);
  return x.timelineLimit === y.timelineLimit &&
    x.requiredState.length === y.requiredState.length &&
    x.requiredState.every(([t, k], i) =>
      y.requiredState[i][0] === t && y.requiredState[i][1] === k
    );
}

/** Sorted, deduplicated pairs and a capped limit, so equal configs compare equal. */
function normalise(config: RoomConfig): RoomConfig {
  const seen = new Set<string>();
  const pairs: [string, string][] = [];
  for (const [type, key] of config.requiredState) {
    const id = `${type}\u0000${key}`;
    if (seen.has(id)) continue;
    seen.add(id);
    pairs.push([type, key]);
  }
  pairs.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  const limit = Number.isFinite(config.timelineLimit) ? Math.trunc(config.timelineLimit) : 0;
  return {
    requiredState: pairs,
    timelineLimit: Math.min(MAX_SLIDING_TIMELINE_LIMIT, Math.max(0, limit)),
  };
}
