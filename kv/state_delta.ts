/**
 * State deltas: the changes one state group applies over its parent. Pure functions, shared by
 * the state group store and the current-state projection.
 */
import {
  splitStateKey,
  type StateKey,
  stateKey,
  type StateMap,
} from "../domain/protocol/events.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";

/** (type, state_key) -> event ID, or null where the entry is removed. */
export type StateDelta = Map<StateKey, string | null>;

/** Encoded entry: sorted so equal deltas always encode to equal bytes (replay compares them). */
type EncodedEntry = [type: string, stateKey: string, eventId: string | null];

/** Encode a delta as UTF-8 JSON, entries sorted by key. */
export function encodeDelta(delta: StateDelta): Uint8Array {
  const keys = [...delta.keys()].sort();
  const entries: EncodedEntry[] = keys.map((k) => {
    const [type, key] = splitStateKey(k);
    return [type, key, delta.get(k) ?? null];
  });
  return encodeJson(entries);
}

/** Decode an encoded delta. */
export function decodeDelta(bytes: Uint8Array): StateDelta {
  const entries = decodeJson<EncodedEntry[]>(bytes);
  return new Map(entries.map(([type, key, id]) => [stateKey(type, key), id]));
}

/** Apply `delta` to `state` in place. */
export function applyDelta(state: StateMap, delta: StateDelta): StateMap {
  for (const [key, id] of delta) {
    if (id === null) state.delete(key);
    else state.set(key, id);
  }
  return state;
}

/** `lower` then `upper`, as one delta; removals are dropped when nothing lies below. */
export function mergeDeltas(lower: StateDelta, upper: StateDelta, atRoot: boolean): StateDelta {
  const merged: StateDelta = new Map(lower);
  for (const [key, id] of upper) merged.set(key, id);
  if (atRoot) {
    for (const [key, id] of merged) if (id === null) merged.delete(key);
  }
  return merged;
}

/** The delta that turns `from` into `to`. */
export function diffStates(from: StateMap, to: StateMap): StateDelta {
  const delta: StateDelta = new Map();
  for (const [key, id] of to) if (from.get(key) !== id) delta.set(key, id);
  for (const key of from.keys()) if (!to.has(key)) delta.set(key, null);
  return delta;
}

/** A rough upper bound of a delta's encoded size, to avoid encoding when far from limits. */
export function estimateDeltaBytes(delta: StateDelta): number {
  let n = 2;
  for (const [key, id] of delta) n += (key.length + (id?.length ?? 4)) * 6 + 12; // JSON may escape a char into 6
  return n;
}
