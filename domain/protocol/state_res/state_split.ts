/** Splitting the states to merge into the unconflicted state map and the conflicted state set. */
import type { StateKey, StateMap } from "../events.ts";

/** The unconflicted map and, per key, the distinct conflicting event IDs. */
export interface StateSplit {
  unconflicted: StateMap;
  conflicted: Map<StateKey, Set<string>>;
}

/**
 * A key is unconflicted when every state map has it with the same event; otherwise all of its
 * values are conflicted, including when some maps lack the key altogether.
 */
export function splitStateMaps(stateMaps: readonly StateMap[]): StateSplit {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<StateKey, Set<string>>();
  const keys = new Set<StateKey>();
  for (const map of stateMaps) for (const key of map.keys()) keys.add(key);
  for (const key of keys) {
    const values = new Set<string>();
    let everywhere = true;
    for (const map of stateMaps) {
      const id = map.get(key);
      if (id === undefined) everywhere = false;
      else values.add(id);
    }
    if (everywhere && values.size === 1) unconflicted.set(key, values.values().next().value!);
    else conflicted.set(key, values);
  }
  return { unconflicted, conflicted };
}
