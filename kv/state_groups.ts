/**
 * State as state groups: each group is a delta over a parent group, so recording the state
 * after an event writes only what changed. Deltas are layered like an LSM tree: a new delta
 * absorbs the layers above it that are at most twice its size, so going down a chain each layer
 * is more than twice the one above it (chains stay logarithmic, and every entry is rewritten a
 * logarithmic number of times); and it stops absorbing at a byte cap, so no layer, and no commit,
 * grows with the room's state: a large room's state is a stack of capped layers.
 */
import { getManyChunked } from "./get_many.ts";
import type { StateMap } from "../domain/protocol/events.ts";
import { readChunks, splitChunks } from "./chunked_value.ts";
import { type CommitSize, measureCommit, type PlannedMutation } from "./commit_budget.ts";
import { type CachedGroup, roomScoped, type StoreContext } from "./store_context.ts";
import type { GroupId, StateGroupRecord } from "./store_records.ts";
import {
  applyDelta,
  decodeDelta,
  encodeDelta,
  estimateDeltaBytes,
  mergeDeltas,
  type StateDelta,
} from "./state_delta.ts";

/**
 * A delta stops absorbing layers beyond this many encoded bytes: one chunk, and small enough
 * that the cascades of a 100-event request stay well inside one commit's 800 KiB.
 */
export const LAYER_CAP_BYTES = 60_000;

/** A group planned in the current batch, not yet committed. */
export interface PlannedGroup {
  id: GroupId;
  record: StateGroupRecord;
  delta: StateDelta;
  /** Continuation chunks (index 1..). */
  rest: Uint8Array[];
}

/** Read a committed group, through the cache. */
export async function readGroup(
  ctx: StoreContext,
  roomId: string,
  id: GroupId,
): Promise<CachedGroup> {
  const cacheKey = roomScoped(roomId, id);
  const cached = ctx.groups.get(cacheKey);
  if (cached) return cached;
  const entry = await ctx.kv.get<StateGroupRecord>(ctx.keys.stateGroup(roomId, id));
  if (!entry.value) throw new Error(`state group ${id} of ${roomId} is missing`);
  return await decodeGroup(ctx, roomId, id, entry.value);
}

async function decodeGroup(
  ctx: StoreContext,
  roomId: string,
  id: GroupId,
  record: StateGroupRecord,
): Promise<CachedGroup> {
  const bytes = await readChunks(
    ctx.kv,
    record.delta,
    record.chunks,
    ctx.keys.stateGroupChunkPrefix(roomId, id),
  );
  const group = { record, delta: decodeDelta(bytes) };
  ctx.groups.set(roomScoped(roomId, id), group);
  return group;
}

/** Read many committed groups, from the cache or in parallel getMany chunks. */
async function readGroups(
  ctx: StoreContext,
  roomId: string,
  ids: readonly GroupId[],
): Promise<Map<GroupId, CachedGroup>> {
  const found = new Map<GroupId, CachedGroup>();
  const missing: GroupId[] = [];
  for (const id of ids) {
    const cached = ctx.groups.get(roomScoped(roomId, id));
    if (cached) found.set(id, cached);
    else missing.push(id);
  }
  const entries = await getManyChunked<StateGroupRecord>(
    ctx.kv,
    missing.map((id) => ctx.keys.stateGroup(roomId, id)),
  );
  await Promise.all(entries.map(async (entry, j) => {
    if (!entry.value) throw new Error(`state group ${missing[j]} of ${roomId} is missing`);
    found.set(missing[j], await decodeGroup(ctx, roomId, missing[j], entry.value));
  }));
  return found;
}

/** The full state of a committed group (null: empty). The result is shared: do not mutate. */
export async function loadGroupState(
  ctx: StoreContext,
  roomId: string,
  id: GroupId | null,
): Promise<StateMap> {
  return await new StateGroupPlanner(ctx, roomId, 0).state(id);
}

/**
 * Reads and plans the groups of one room within one batch: planned groups overlay committed
 * ones until the commit lands. `fork` gives group commit a checkpoint to roll back to.
 */
export class StateGroupPlanner {
  readonly planned: Map<GroupId, PlannedGroup>;
  #states = new Map<GroupId, StateMap>();

  /** `nextId` is the room head's next free group ID. */
  constructor(
    readonly ctx: StoreContext,
    readonly roomId: string,
    public nextId: number,
    planned?: Map<GroupId, PlannedGroup>,
  ) {
    this.planned = new Map(planned);
  }

  /** A copy to plan on; the original stays as it was. */
  fork(): StateGroupPlanner {
    const copy = new StateGroupPlanner(this.ctx, this.roomId, this.nextId, this.planned);
    copy.#states = new Map(this.#states);
    return copy;
  }

  async #group(id: GroupId): Promise<{ record: StateGroupRecord; delta: StateDelta }> {
    return this.planned.get(id) ?? await readGroup(this.ctx, this.roomId, id);
  }

  /** The full state of a group (null: empty). Shared: do not mutate. */
  async state(id: GroupId | null): Promise<StateMap> {
    if (id === null) return new Map();
    const local = this.#states.get(id);
    if (local) return local;
    const cacheKey = roomScoped(this.roomId, id);
    const cached = this.ctx.states.get(cacheKey);
    if (cached) return cached;

    const top = await this.#group(id);
    const layers = [...top.record.chain, id];
    // Start from the highest layer already materialised, then apply the deltas above it.
    let start = -1;
    let base: StateMap | undefined;
    for (let i = layers.length - 2; i >= 0; i--) {
      base = this.#states.get(layers[i]) ?? this.ctx.states.get(roomScoped(this.roomId, layers[i]));
      if (base) {
        start = i;
        break;
      }
    }
    const needed = layers.slice(start + 1);
    const committed = await readGroups(
      this.ctx,
      this.roomId,
      needed.filter((g) => !this.planned.has(g)),
    );
    const state: StateMap = new Map(base);
    for (const layer of needed) {
      applyDelta(state, (this.planned.get(layer) ?? committed.get(layer)!).delta);
    }
    if (this.planned.has(id)) this.#states.set(id, state);
    else this.ctx.states.set(cacheKey, state);
    return state;
  }

  /**
   * Plan a group holding `parent`'s state changed by `delta`; returns the parent itself when
   * the delta is empty. The new delta absorbs upper layers (see module comment).
   */
  async plan(parent: GroupId | null, delta: StateDelta): Promise<GroupId | null> {
    if (delta.size === 0) return parent;
    const layers = parent === null ? [] : [...(await this.#group(parent)).record.chain, parent];
    let merged = delta;
    let mergedBytes = estimateDeltaBytes(merged);
    while (layers.length > 0) {
      const top = await this.#group(layers[layers.length - 1]);
      if (top.record.entries > 2 * merged.size) break;
      const candidate = mergeDeltas(top.delta, merged, layers.length === 1);
      let candidateBytes = top.record.bytes + mergedBytes;
      if (candidateBytes > LAYER_CAP_BYTES) {
        candidateBytes = encodeDelta(candidate).byteLength;
        if (candidateBytes > LAYER_CAP_BYTES) break;
      }
      merged = candidate;
      mergedBytes = candidateBytes;
      layers.pop();
    }
    if (layers.length === 0) merged = mergeDeltas(new Map(), merged, true);
    const bytes = encodeDelta(merged);
    const [first, ...rest] = splitChunks(bytes);
    const id = this.nextId++;
    const record: StateGroupRecord = {
      parent: layers.length === 0 ? null : layers[layers.length - 1],
      chain: layers,
      entries: merged.size,
      bytes: bytes.byteLength,
      delta: first,
      chunks: rest.length + 1,
    };
    this.planned.set(id, { id, record, delta: merged, rest });
    return id;
  }

  /** After the commit landed: planned groups are committed now, so share them via the caches. */
  publish(): void {
    for (const group of this.planned.values()) {
      this.ctx.groups.set(roomScoped(this.roomId, group.id), group);
    }
    for (const [id, state] of this.#states) this.ctx.states.set(roomScoped(this.roomId, id), state);
  }

  /** The writes for every planned group. */
  mutations(): PlannedMutation[] {
    return [...this.planned.values()].flatMap((group) =>
      groupWrites(this.ctx, this.roomId, group).mutations
    );
  }

  /** The estimated size of `mutations()`. */
  size(): CommitSize {
    const total: CommitSize = { mutations: 0, checks: 0, mutationBytes: 0, keyBytes: 0 };
    for (const group of this.planned.values()) {
      const size = groupWrites(this.ctx, this.roomId, group).size;
      total.mutations += size.mutations;
      total.mutationBytes += size.mutationBytes;
      total.keyBytes += size.keyBytes;
    }
    return total;
  }
}

const groupWritesCache = new WeakMap<
  PlannedGroup,
  { mutations: PlannedMutation[]; size: CommitSize }
>();

/** A planned group's writes, built and measured once (planned groups never change). */
function groupWrites(
  ctx: StoreContext,
  roomId: string,
  group: PlannedGroup,
): { mutations: PlannedMutation[]; size: CommitSize } {
  const cached = groupWritesCache.get(group);
  if (cached) return cached;
  const mutations: PlannedMutation[] = [
    { op: "set", key: ctx.keys.stateGroup(roomId, group.id), value: group.record },
    ...group.rest.map((chunk, i): PlannedMutation => ({
      op: "set",
      key: ctx.keys.stateGroupChunk(roomId, group.id, i + 1),
      value: chunk,
    })),
  ];
  const writes = { mutations, size: measureCommit(mutations) };
  groupWritesCache.set(group, writes);
  return writes;
}
