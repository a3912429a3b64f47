/**
 * State resolution v2 (room versions 2 to 11) and v2.1 (room version 12, MSC4297), following
 * the spec's algorithm step by step over injected storage.
 */
import { stateKey, type StateMap } from "../events.ts";
import { EventCache } from "./event_cache.ts";
import { authChainsOfStateMaps, authDifference, conflictedStateSubgraph } from "./auth_chain.ts";
import { isPowerEvent, prefetchSenderPowerInputs, senderPowerLevel } from "./power_events.ts";
import { type PowerTieBreak, reverseTopologicalPowerOrder } from "./topological_sort.ts";
import { mainlineOrder } from "./mainline.ts";
import { type AuthCheckContext, iterativeAuthChecks } from "./iterative_auth_checks.ts";
import { splitStateMaps } from "./state_split.ts";
import type { CheckAuth, StateResolutionInput } from "./resolution_input.ts";

/** The v2.1 changes, both on from room version 12. */
export interface StateResolutionV2Rules {
  /** Start the power events' iterative auth checks from an empty map, not the unconflicted one. */
  beginWithEmptyState: boolean;
  /** Add the conflicted state subgraph to the full conflicted set. */
  includeConflictedSubgraph: boolean;
}

/** The rules for the algorithm a room version names ("v2" or "v2.1"). */
export function stateResolutionV2Rules(algorithm: "v2" | "v2.1"): StateResolutionV2Rules {
  const v21 = algorithm === "v2.1";
  return { beginWithEmptyState: v21, includeConflictedSubgraph: v21 };
}

/**
 * Step 1's set X and its auth DAG: the power events of the full conflicted set plus the events of
 * the full conflicted set in their auth chains. Like Synapse and ruma, the walk only passes
 * through events that are themselves in the full conflicted set.
 */
function powerEventGraph(
  fullConflicted: Set<string>,
  events: EventCache,
): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const stack = [...fullConflicted].filter((id) => {
    const event = events.peek(id);
    return event !== undefined && isPowerEvent(event);
  });
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (graph.has(id)) continue;
    const event = events.peek(id);
    const cited = (event?.auth_events ?? []).filter((a) => fullConflicted.has(a));
    graph.set(id, cited);
    for (const authId of cited) if (!graph.has(authId)) stack.push(authId);
  }
  return graph;
}

/** Resolve `input.stateMaps` with state resolution v2 under `rules`. */
export async function resolveStateV2(
  input: StateResolutionInput,
  rules: StateResolutionV2Rules,
  checkAuth: CheckAuth,
): Promise<StateMap> {
  const { version, stateMaps } = input;
  const { unconflicted, conflicted } = splitStateMaps(stateMaps);
  // Without conflicts nothing is re-authorised, as in Synapse and ruma: the auth difference
  // alone must not pull events into the state.
  if (conflicted.size === 0) return unconflicted;

  const events = new EventCache(input.getEvent);
  const ctx: AuthCheckContext = {
    version,
    events,
    checkAuth,
    isRejected: input.isRejected ?? (() => false),
  };

  const conflictedIds = new Set<string>();
  for (const ids of conflicted.values()) for (const id of ids) conflictedIds.add(id);
  const chains = input.authChains?.length === stateMaps.length
    ? input.authChains
    : await authChainsOfStateMaps(stateMaps, events);

  const candidates = new Set([...conflictedIds, ...authDifference(chains)]);
  if (rules.includeConflictedSubgraph) {
    for (const id of await conflictedStateSubgraph(conflictedIds, events)) candidates.add(id);
  }
  // Events we cannot fetch are left out of the full conflicted set.
  const fullConflicted = new Set<string>();
  for (const event of await events.getMany(candidates)) {
    if (event && event.state_key !== undefined) fullConflicted.add(event.event_id);
  }

  // Step 1: power events and their conflicted auth ancestry, in reverse topological power order.
  const graph = powerEventGraph(fullConflicted, events);
  const powerEvents = [...graph.keys()].map((id) => events.peek(id)!);
  await prefetchSenderPowerInputs(powerEvents, events, version);
  const tieBreaks = new Map<string, PowerTieBreak>();
  for (const event of powerEvents) {
    tieBreaks.set(event.event_id, {
      power: senderPowerLevel(event, events, version),
      originServerTs: event.origin_server_ts,
    });
  }
  const sortedPowerEvents = reverseTopologicalPowerOrder(graph, tieBreaks);

  // Step 2: authorise them, from the unconflicted map (v2) or from nothing (v2.1).
  const partial = await iterativeAuthChecks(
    sortedPowerEvents,
    rules.beginWithEmptyState ? new Map() : unconflicted,
    ctx,
  );

  // Steps 3 and 4: everything else, in mainline order of the partially resolved power levels.
  const remaining = [...fullConflicted].filter((id) => !graph.has(id));
  const powerLevelsId = partial.get(stateKey("m.room.power_levels", ""));
  const sortedRemaining = await mainlineOrder(remaining, powerLevelsId, events);
  const resolved = await iterativeAuthChecks(sortedRemaining, partial, ctx);

  // Step 5: the unconflicted state map wins.
  for (const [key, id] of unconflicted) resolved.set(key, id);
  return resolved;
}
