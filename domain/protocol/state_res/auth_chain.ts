/**
 * Auth chain walks for state resolution v2: the full auth chain of a state map, the auth
 * difference between forks, and (v2.1) the conflicted state subgraph.
 */
import type { StateMap } from "../events.ts";
import type { EventCache } from "./event_cache.ts";

/**
 * The union of the auth chains of `ids`: every event reachable through `auth_events`, not
 * counting the starting events unless another one reaches them. Missing events end their branch.
 */
export async function authChainOf(ids: Iterable<string>, events: EventCache): Promise<Set<string>> {
  const chain = new Set<string>();
  let frontier = [...new Set(ids)];
  // Breadth-first, one storage round per level, so a cold cache fetches concurrently.
  while (frontier.length > 0) {
    const fetched = await events.getMany(frontier);
    const next: string[] = [];
    for (const event of fetched) {
      if (!event) continue;
      for (const authId of event.auth_events) {
        if (chain.has(authId)) continue;
        chain.add(authId);
        next.push(authId);
      }
    }
    frontier = next;
  }
  return chain;
}

/** The full auth chain of each state map (union of its events' auth chains). */
export function authChainsOfStateMaps(
  stateMaps: StateMap[],
  events: EventCache,
): Promise<Set<string>[]> {
  return Promise.all(stateMaps.map((map) => authChainOf(map.values(), events)));
}

/** The auth difference: events in some auth chain but not in all of them (∪Ci − ∩Ci). */
export function authDifference(chains: Set<string>[]): Set<string> {
  const counts = new Map<string, number>();
  for (const chain of chains) {
    for (const id of chain) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const difference = new Set<string>();
  for (const [id, count] of counts) {
    if (count < chains.length) difference.add(id);
  }
  return difference;
}

/**
 * The conflicted state subgraph (MSC4297): every event on an `auth_events` path from one
 * conflicted event to another, endpoints included. Events that cannot be fetched end a path.
 */
export async function conflictedStateSubgraph(
  conflicted: Iterable<string>,
  events: EventCache,
): Promise<Set<string>> {
  const targets = new Set(conflicted);
  // Walk down from every conflicted event, remembering reverse edges so we can walk back up.
  const citedBy = new Map<string, string[]>();
  const belowTarget = new Set<string>();
  const seen = new Set(targets);
  let frontier = [...targets];
  while (frontier.length > 0) {
    const fetched = await events.getMany(frontier);
    const next: string[] = [];
    fetched.forEach((event, i) => {
      if (!event) return;
      const from = frontier[i];
      for (const authId of event.auth_events) {
        belowTarget.add(authId);
        const parents = citedBy.get(authId);
        if (parents) parents.push(from);
        else citedBy.set(authId, [from]);
        if (!seen.has(authId)) {
          seen.add(authId);
          next.push(authId);
        }
      }
    });
    frontier = next;
  }

  // Everything that can reach a conflicted event, found by walking the reverse edges upwards.
  const reachesTarget = new Set(targets);
  const stack = [...targets];
  while (stack.length > 0) {
    const id = stack.pop()!;
    for (const parent of citedBy.get(id) ?? []) {
      if (!reachesTarget.has(parent)) {
        reachesTarget.add(parent);
        stack.push(parent);
      }
    }
  }

  // On a path between two conflicted events: below one (strictly) and reaching another, or a
  // conflicted event that strictly reaches another one.
  const subgraph = new Set<string>();
  for (const id of reachesTarget) {
    if (belowTarget.has(id)) subgraph.add(id);
  }
  for (const id of targets) {
    if (subgraph.has(id)) continue;
    const event = events.peek(id);
    if (event?.auth_events.some((authId) => subgraph.has(authId))) subgraph.add(id);
  }
  return subgraph;
}
