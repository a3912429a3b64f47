/**
 * Staged states: a room state supplied from outside (a join's `send_join` state, a gap's
 * `/state_ids`), written before the event that needs it, possibly before the room has a head.
 * It is stored as a chain of state-group layers with string IDs (`<stagedId>.<n>`, each at most
 * one layer cap of bytes), so an event appended with it points its "before" group at the top
 * layer and the rest of the store reads it like any group. The ID is a hash of the state's
 * encoding: staging the same state again finds the same record, which is written last, after
 * every layer, so its presence means the whole state is there.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../domain/protocol/base64.ts";
import { unsupportedRoomVersion } from "../domain/errors.ts";
import { splitStateKey, type StateMap } from "../domain/protocol/events.ts";
import type { StagedState } from "../domain/ports/event_store.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { encodeJson, splitChunks } from "./chunked_value.ts";
import { type PlannedMutation, SplitCommitWriter } from "./commit_budget.ts";
import { encodeDelta, type StateDelta } from "./state_delta.ts";
import { LAYER_CAP_BYTES } from "./state_groups.ts";
import { roomScoped, type StoreContext } from "./store_context.ts";
import type { GroupId, StagedStateRecord, StateGroupRecord } from "./store_records.ts";

/** A staged state's record, or null when it was never finished. */
export async function readStagedState(
  ctx: StoreContext,
  roomId: string,
  stagedId: string,
): Promise<StagedStateRecord | null> {
  return (await ctx.kv.get<StagedStateRecord>(ctx.keys.stagedState(roomId, stagedId))).value;
}

/** The content address of a state: the SHA-256 of its sorted encoding, base64url. */
export function stagedStateId(state: StateMap): string {
  return encodeBase64UrlUnpadded(sha256(encodeDelta(state)));
}

/**
 * Stage `state` for `roomId` (see module comment): the layers in as many commits as KV's limits
 * need, then the record. Returns at once when the record is there already.
 */
export async function stageState(
  ctx: StoreContext,
  roomId: string,
  roomVersionId: string,
  state: StateMap,
): Promise<StagedState> {
  if (!roomVersion(roomVersionId)) throw unsupportedRoomVersion(roomVersionId);
  const id = stagedStateId(state);
  const handle: StagedState = { roomId, id, entries: state.size };
  if (await readStagedState(ctx, roomId, id)) return handle;

  const layers = splitLayers(state);
  const chain: GroupId[] = [];
  const groups: { id: GroupId; record: StateGroupRecord; delta: StateDelta }[] = [];
  const writer = new SplitCommitWriter(ctx.kv);
  const add = async (writes: PlannedMutation[]) => {
    if (!(await writer.add(writes))) {
      throw new Error("staging a state failed a check it does not make");
    }
  };
  for (let n = 0; n < layers.length; n++) {
    const groupId = `${id}.${n}`;
    const delta = layers[n];
    const bytes = encodeDelta(delta);
    const [first, ...rest] = splitChunks(bytes);
    const record: StateGroupRecord = {
      parent: chain.length === 0 ? null : chain[chain.length - 1],
      chain: [...chain],
      entries: delta.size,
      bytes: bytes.byteLength,
      delta: first,
      chunks: rest.length + 1,
    };
    await add([
      { op: "set", key: ctx.keys.stateGroup(roomId, groupId), value: record },
      ...rest.map((chunk, i): PlannedMutation => ({
        op: "set",
        key: ctx.keys.stateGroupChunk(roomId, groupId, i + 1),
        value: chunk,
      })),
    ]);
    groups.push({ id: groupId, record, delta });
    chain.push(groupId);
  }
  const top = chain.length === 0 ? null : chain[chain.length - 1];
  const record: StagedStateRecord = {
    room_version: roomVersionId,
    top,
    entries: state.size,
    layers: layers.length,
  };
  await add([{ op: "set", key: ctx.keys.stagedState(roomId, id), value: record }]);
  if (!(await writer.flush())) throw new Error("staging a state failed a check it does not make");
  // Committed and immutable: the join that follows reads them from memory.
  for (const group of groups) ctx.groups.set(roomScoped(roomId, group.id), group);
  if (top !== null) ctx.states.set(roomScoped(roomId, top), new Map(state));
  return handle;
}

/**
 * Cut the state, in key order, into layers whose encoding stays within the layer cap (a single
 * entry larger than that gets a layer of its own, chunked like any large delta).
 */
function splitLayers(state: StateMap): StateDelta[] {
  const layers: StateDelta[] = [];
  let layer: StateDelta = new Map();
  let bytes = 2;
  for (const key of [...state.keys()].sort()) {
    const id = state.get(key)!;
    const entryBytes = encodeJson([...splitStateKey(key), id]).byteLength + 1;
    if (layer.size > 0 && bytes + entryBytes > LAYER_CAP_BYTES) {
      layers.push(layer);
      layer = new Map();
      bytes = 2;
    }
    layer.set(key, id);
    bytes += entryBytes;
  }
  if (layer.size > 0) layers.push(layer);
  return layers;
}
