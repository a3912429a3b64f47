/**
 * What every part of the KV event store shares: the database, the key schema (maybe under a
 * replay namespace), the injected state resolver and the caches of immutable records.
 */
import type { StateMap } from "../domain/protocol/events.ts";
import { resolveState } from "../domain/protocol/state_res/resolve_state.ts";
import type {
  FoundEvent,
  StateAuthorizer,
  StateResolver,
  StoredEvent,
} from "../domain/ports/event_store.ts";
import { authoriseAgainstState } from "../domain/protocol/state_authorisation.ts";
import { LruCache } from "./lru_cache.ts";
import { EventStoreKeys } from "./schema.ts";
import type { EventStateGroups, StateGroupRecord } from "./store_records.ts";
import type { StateDelta } from "./state_delta.ts";

/** A committed state group, decoded. */
export interface CachedGroup {
  record: StateGroupRecord;
  delta: StateDelta;
}

/** Shared dependencies and caches; caches only ever hold committed, immutable records. */
export interface StoreContext {
  kv: Deno.Kv;
  keys: EventStoreKeys;
  resolver: StateResolver;
  /** The auth rules events appended with `checkState` are checked with. */
  authorizer: StateAuthorizer;
  events: LruCache<string, StoredEvent>;
  /** Outlier records (immutable once written), decoded. */
  outliers: LruCache<string, FoundEvent>;
  eventGroups: LruCache<string, EventStateGroups>;
  groups: LruCache<string, CachedGroup>;
  /** Materialised states of committed groups; callers must not mutate them. */
  states: LruCache<string, StateMap>;
}

/** Options for building a store context. */
export interface StoreContextOptions {
  /** State resolution; defaults to the room version's algorithm with the real auth rules. */
  resolver?: StateResolver;
  /** Auth rules against a state for `checkState`; defaults to the domain's rules. */
  authorizer?: StateAuthorizer;
  /** Key namespace (replay builds projections under one). */
  namespace?: Deno.KvKey;
  /** Events kept decoded in memory. */
  eventCacheSize?: number;
}

const MIB = 1024 * 1024;

/** Build a context with fresh caches. */
export function createStoreContext(kv: Deno.Kv, options: StoreContextOptions): StoreContext {
  return {
    kv,
    keys: new EventStoreKeys(options.namespace ?? []),
    resolver: options.resolver ?? resolveState,
    authorizer: options.authorizer ?? authoriseAgainstState,
    events: new LruCache({
      capacity: options.eventCacheSize ?? 4096,
      maxWeight: 32 * MIB,
      weigh: (event) => JSON.stringify(event.pdu.content).length + 512,
    }),
    outliers: new LruCache({
      capacity: 8192,
      maxWeight: 32 * MIB,
      weigh: (event) => JSON.stringify(event.pdu.content).length + 512,
    }),
    eventGroups: new LruCache({ capacity: 16384 }),
    groups: new LruCache({
      capacity: 4096,
      maxWeight: 64 * MIB,
      weigh: (group) => group.record.bytes * 2 + 256,
    }),
    // A large room's materialised state is big, so keep few and weigh them.
    states: new LruCache({ capacity: 32, maxWeight: 64 * MIB, weigh: (state) => state.size * 160 }),
  };
}

/** Cache key of a room-scoped record. */
export function roomScoped(roomId: string, id: number | string): string {
  return `${roomId}\u0000${id}`;
}
