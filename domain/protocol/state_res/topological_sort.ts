/**
 * The reverse topological power ordering of state resolution v2: Kahn's algorithm over the auth
 * DAG, always taking the smallest ready event by (higher sender power, older ts, smaller ID).
 */
import { MinHeap } from "./min_heap.ts";

/** What breaks ties between events that are ready at the same time. */
export interface PowerTieBreak {
  /** The sender's power level from the event's own auth events (Infinity for v12 creators). */
  power: number;
  originServerTs: number;
}

/** The spec's comparison: greater power first, then smaller origin_server_ts, then event ID. */
export function comparePowerTieBreak(
  a: PowerTieBreak & { id: string },
  b: PowerTieBreak & { id: string },
): number {
  // Explicit comparisons: Infinity - Infinity is NaN.
  if (a.power !== b.power) return a.power > b.power ? -1 : 1;
  if (a.originServerTs !== b.originServerTs) return a.originServerTs < b.originServerTs ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Topologically sort `graph` (event ID to the IDs it cites in auth_events), cited events first,
 * choosing the smallest ready vertex under `compare` at every step. Edges to IDs outside the
 * graph are ignored; vertices on a cycle (impossible with honest hashes) are left out.
 */
export function lexicographicTopologicalSort(
  graph: ReadonlyMap<string, Iterable<string>>,
  compare: (a: string, b: string) => number,
): string[] {
  const pendingCited = new Map<string, number>();
  const citedBy = new Map<string, string[]>();
  const ready = new MinHeap<string>(compare);
  for (const [id, cited] of graph) {
    let count = 0;
    for (const citedId of new Set(cited)) {
      if (!graph.has(citedId) || citedId === id) continue;
      count++;
      const parents = citedBy.get(citedId);
      if (parents) parents.push(id);
      else citedBy.set(citedId, [id]);
    }
    pendingCited.set(id, count);
    if (count === 0) ready.push(id);
  }
  const sorted: string[] = [];
  for (let id = ready.pop(); id !== undefined; id = ready.pop()) {
    sorted.push(id);
    for (const parent of citedBy.get(id) ?? []) {
      const left = pendingCited.get(parent)! - 1;
      pendingCited.set(parent, left);
      if (left === 0) ready.push(parent);
    }
  }
  return sorted;
}

/** The reverse topological power ordering of `graph`, earliest event first. */
export function reverseTopologicalPowerOrder(
  graph: ReadonlyMap<string, Iterable<string>>,
  tieBreaks: ReadonlyMap<string, PowerTieBreak>,
): string[] {
  const keys = new Map<string, PowerTieBreak & { id: string }>();
  for (const id of graph.keys()) {
    const tie = tieBreaks.get(id) ?? { power: 0, originServerTs: 0 };
    keys.set(id, { id, power: tie.power, originServerTs: tie.originServerTs });
  }
  return lexicographicTopologicalSort(
    graph,
    (a, b) => comparePowerTieBreak(keys.get(a)!, keys.get(b)!),
  );
}
