/**
 * The contract between state resolution and its callers: the states to merge, injected storage,
 * and the auth rules it re-runs. Kept apart from the algorithms so every piece can share it.
 */
import type { RoomEvent, StateKey, StateMap } from "../events.ts";
import type { RoomVersion } from "../room_versions.ts";

/** The decision of the auth rules on one event. */
export type AuthDecision = { allowed: true } | { allowed: false; reason: string };

/** The auth rules as state resolution calls them; `checkEventAuth` has this shape. */
export type CheckAuth = (
  event: RoomEvent,
  authState: (key: StateKey) => RoomEvent | undefined,
  version: RoomVersion,
) => AuthDecision;

/** What `resolveState` needs: the forks to merge and a way to read events. */
export interface StateResolutionInput {
  version: RoomVersion;
  /** The states to merge, e.g. the state after each prev event. */
  stateMaps: StateMap[];
  /**
   * Optional precomputed auth chains, one per state map: the union of the auth chains of the
   * map's events. Computed through `getEvent` when absent or not exactly one per map. Only v2
   * and v2.1 read them.
   */
  authChains?: Set<string>[];
  /** Injected storage; undefined means the event is unknown and is left out. */
  getEvent(id: string): Promise<RoomEvent | undefined>;
  /**
   * Events rejected by the auth rules on arrival. The spec keeps them out of the auth events
   * used during iterative auth checks; by default nothing is considered rejected.
   */
  isRejected?(id: string): boolean;
  /** The auth rules to apply; defaults to `checkEventAuth` from domain/auth_rules.ts. */
  checkAuth?: CheckAuth;
}
