/**
 * Test harness for ruma's state resolution fixtures (/work/shared/fixtures/state-res, see its
 * README): loads the PDUs as RoomEvents and drives resolveState in the iterative, batched,
 * atomic and state-map modes that ruma's own harness defines.
 */
import {
  type RoomEvent,
  roomIdFromCreateEventId,
  stateKey,
  type StateMap,
} from "../../../../domain/protocol/events.ts";
import type { JsonObject } from "../../../../domain/protocol/json.ts";
import { type RoomVersion, roomVersion } from "../../../../domain/protocol/room_versions.ts";
import { resolveState } from "../../../../domain/protocol/state_res/resolve_state.ts";
import type { CheckAuth } from "../../../../domain/protocol/state_res/resolution_input.ts";

const FIXTURES = new URL("../../../../../shared/fixtures/state-res/", import.meta.url);

/** One named test of expected.json. */
export interface FixtureCase {
  mode: "batches" | "state_maps";
  room_version: string;
  state_resolution: "v2.0" | "v2.1";
  pdu_files: string[];
  state_map_files: string[];
  resolved_state: Record<string, string>;
}

/** The fixture events of one test, loaded from its PDU files in order. */
export interface LoadedFixture {
  version: RoomVersion;
  /** One list per PDU file, in load order. */
  batches: RoomEvent[][];
  events: Map<string, RoomEvent>;
  rejected: Set<string>;
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(new URL(path, FIXTURES)));
}

/** The 13 named tests and what they expect. */
export async function loadExpected(): Promise<Record<string, FixtureCase>> {
  return await readJson("expected.json") as Record<string, FixtureCase>;
}

/** The expected resolved state of a test as a StateMap (`type|state_key` split at the first `|`). */
export function expectedStateMap(fixture: FixtureCase): StateMap {
  const map: StateMap = new Map();
  for (const [key, id] of Object.entries(fixture.resolved_state)) {
    const bar = key.indexOf("|");
    map.set(stateKey(key.slice(0, bar), key.slice(bar + 1)), id);
  }
  return map;
}

/** Load PDU files in order; the room version comes from the first file's create event. */
export async function loadPdus(files: string[]): Promise<LoadedFixture> {
  const batches: RoomEvent[][] = [];
  const events = new Map<string, RoomEvent>();
  const rejected = new Set<string>();
  let version: RoomVersion | undefined;
  for (const file of files) {
    const pdus = await readJson(file) as Record<string, unknown>[];
    const batch: RoomEvent[] = [];
    for (const pdu of pdus) {
      if (typeof pdu.state_key !== "string") throw new Error(`${pdu.event_id}: no state_key`);
      const eventId = pdu.event_id as string;
      if (!version) {
        const content = pdu.content as JsonObject;
        if (pdu.type !== "m.room.create") throw new Error(`${file}: first PDU is not a create`);
        version = roomVersion(String(content.room_version));
        if (!version) throw new Error(`unknown room version ${content.room_version}`);
      }
      const roomId = typeof pdu.room_id === "string"
        ? pdu.room_id
        : pdu.type === "m.room.create" && version.roomIdIsCreateEventHash
        ? roomIdFromCreateEventId(eventId)
        : "";
      const event: RoomEvent = {
        event_id: eventId,
        room_id: roomId,
        sender: pdu.sender as string,
        type: pdu.type as string,
        state_key: pdu.state_key,
        content: pdu.content as JsonObject,
        origin_server_ts: pdu.origin_server_ts as number,
        prev_events: pdu.prev_events as string[],
        auth_events: pdu.auth_events as string[],
      };
      if (typeof pdu.redacts === "string") event.redacts = pdu.redacts;
      if (pdu.rejected === true) rejected.add(eventId);
      events.set(eventId, event);
      batch.push(event);
    }
    batches.push(batch);
  }
  if (!version) throw new Error("no PDUs");
  return { version, batches, events, rejected };
}

/** The auth chain of one event, written independently of the code under test. */
function eventAuthChain(
  id: string,
  events: Map<string, RoomEvent>,
  memo: Map<string, Set<string>>,
) {
  const known = memo.get(id);
  if (known) return known;
  const event = events.get(id);
  if (!event) throw new Error(`missing event ${id}`);
  const chain = new Set<string>();
  for (const authId of event.auth_events) {
    chain.add(authId);
    for (const inner of eventAuthChain(authId, events, memo)) chain.add(inner);
  }
  memo.set(id, chain);
  return chain;
}

/** Runs resolveState over one loaded fixture. */
export class FixtureRunner {
  readonly #fixture: LoadedFixture;
  readonly #checkAuth?: CheckAuth;
  readonly #chainMemo = new Map<string, Set<string>>();
  /** How many resolveState calls were made (a sanity check that modes really ran). */
  calls = 0;

  /** Wrap a loaded fixture; `checkAuth` overrides the default auth rules. */
  constructor(fixture: LoadedFixture, checkAuth?: CheckAuth) {
    this.#fixture = fixture;
    this.#checkAuth = checkAuth;
  }

  /** The union of the auth chains of the given events. */
  authChainOf(ids: Iterable<string>): Set<string> {
    const chain = new Set<string>();
    for (const id of ids) {
      for (const inner of eventAuthChain(id, this.#fixture.events, this.#chainMemo)) {
        chain.add(inner);
      }
    }
    return chain;
  }

  /** One resolveState call with the harness's storage. */
  resolve(stateMaps: StateMap[], authChains?: Set<string>[]): Promise<StateMap> {
    this.calls++;
    const { events, rejected, version } = this.#fixture;
    return resolveState({
      version,
      stateMaps,
      authChains: authChains ?? stateMaps.map((map) => this.authChainOf(map.values())),
      getEvent: (id) => Promise.resolve(events.get(id)),
      isRejected: (id) => rejected.has(id),
      checkAuth: this.#checkAuth,
    });
  }

  /** Mode 1: walk the prev_events DAG from the create event, resolving at every event. */
  async iterative(): Promise<StateMap> {
    const all = this.#fixture.batches.flat();
    const after = new Map<string, StateMap>();
    const cited = new Set(all.flatMap((e) => e.prev_events));
    let pending = all;
    while (pending.length > 0) {
      const blocked: RoomEvent[] = [];
      for (const event of pending) {
        if (!event.prev_events.every((id) => after.has(id))) {
          blocked.push(event);
          continue;
        }
        const before = await this.resolve(event.prev_events.map((id) => after.get(id)!));
        const withEvent = new Map(before).set(
          stateKey(event.type, event.state_key!),
          event.event_id,
        );
        after.set(event.event_id, await this.resolve([before, withEvent]));
      }
      if (blocked.length === pending.length) throw new Error("prev_events DAG is not connected");
      pending = blocked;
    }
    const leaves = all.filter((e) => !cited.has(e.event_id));
    return this.resolve(leaves.map((e) => after.get(e.event_id)!));
  }

  /** Mode 2: one resolution per PDU file, on top of the previous file's result. */
  async batched(): Promise<StateMap> {
    let previous: StateMap | undefined;
    for (const batch of this.#fixture.batches) previous = await this.#resolveBatch(batch, previous);
    return previous!;
  }

  /** Mode 3: one resolution over every PDU of every file. */
  atomic(): Promise<StateMap> {
    return this.#resolveBatch(this.#fixture.batches.flat(), undefined);
  }

  /** Mode `state_maps`: one resolution over state maps given as lists of event IDs. */
  stateMaps(files: string[][]): Promise<StateMap> {
    return this.resolve(this.stateMapsOf(files));
  }

  /** State maps from lists of event IDs, keyed by each event's (type, state_key). */
  stateMapsOf(files: string[][]): StateMap[] {
    return files.map((ids) => {
      const map: StateMap = new Map();
      for (const id of ids) {
        const event = this.#fixture.events.get(id);
        if (!event) throw new Error(`state map names unknown event ${id}`);
        map.set(stateKey(event.type, event.state_key!), id);
      }
      return map;
    });
  }

  #resolveBatch(batch: RoomEvent[], previous: StateMap | undefined): Promise<StateMap> {
    const maps: StateMap[] = previous ? [previous] : [];
    for (const event of batch) {
      maps.push(new Map([[stateKey(event.type, event.state_key!), event.event_id]]));
    }
    return this.resolve(maps);
  }
}

/** Read a test's state-map files (lists of event IDs). */
export async function loadStateMapFiles(files: string[]): Promise<string[][]> {
  return await Promise.all(files.map((f) => readJson(f) as Promise<string[]>));
}
