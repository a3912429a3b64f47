/**
 * A sliding-sync connection's state (MSC4186 "Connections"): which `pos` values the client may
 * send, the sticky room subscriptions, and per room the position it was last sent at and the
 * config it was sent with. Pure functions over records a SlidingConnectionStore keeps.
 *
 * Positions form a chain. Each answer issues a child of the position the request named; the
 * client confirms a child by sending it, which makes it the connection's `confirmed` position
 * and invalidates its siblings and everything older (MSC4186 lets a server drop state before a
 * pos it has seen). A client may send the confirmed pos again (a retry after a lost answer),
 * and must then be answered as if the lost answer never happened, so a room record keeps the
 * values written by the positions of one depth that stamped it (siblings, when a pos was sent
 * twice at once: each keeps its own, whichever saved last) and the one they replaced (`prev`),
 * which is the value as of their parent. A record read for a position off the chain (a child
 * not yet confirmed, or a sibling that lost to a retry) reads as `prev`.
 * Siblings exist only where a pos was retried; `forks` remembers, for those depths only, which
 * attempt the client confirmed, so a record from a losing sibling is recognised however late.
 */
import { MatrixError } from "../errors.ts";
import type { RoomConfig } from "./room_config.ts";

/** Children of the confirmed position kept as valid `pos` (retries past this expire older ones). */
export const MAX_ISSUED = 8;
/** Depths with retried positions remembered; a connection retried more often starts again. */
export const MAX_FORKS = 64;
/** Longest `pos` accepted (generation, depth, attempt). */
export const MAX_POS_LENGTH = 64;

/** One position of the connection. */
export interface PositionState {
  /** Distance from the connection's start (the root, never sent to the client, is 0). */
  depth: number;
  /** Tells apart the children of one position (retries). */
  attempt: string;
  /** The sync token the answer that issued it covered (empty for the root). */
  token: string;
  /** Sticky room subscriptions: room ID -> config key (see `configKey`). */
  subscriptions: Record<string, string>;
  /** Each list's `count` in the answer, so a changed count alone answers a long-poll. */
  listCounts: Record<string, number>;
}

/** A connection's head record. */
export interface ConnectionHead {
  /** Random per connection start: records of an earlier start of the conn_id are ignored. */
  generation: string;
  /** The position the client last sent (or the root of a new connection). */
  confirmed: PositionState;
  /** Children of `confirmed` answered so far, newest last (at most MAX_ISSUED). */
  issued: PositionState[];
  /** How many children of `confirmed` were issued, dropped ones included. */
  issuedCount: number;
  /** Depth -> the attempt confirmed there, for depths where more than one was issued. */
  forks: Record<string, string>;
  /** The subscription configs the positions above name, by config key. */
  configs: Record<string, RoomConfig>;
}

/** What the connection knows it sent of one room. */
export interface SentRoom {
  /** The sync token up to which the room's data was sent. */
  sentAt: string;
  /** The key of the (merged) config it was sent with. */
  config: string;
}

/** One room's record on a connection. */
export interface RoomEntry {
  /** The connection start that wrote it. */
  generation: string;
  /** The depth of the positions that stamped it. */
  depth: number;
  /** What each of those positions (by attempt) recorded. */
  values: Record<string, SentRoom>;
  /** The value as of their parent (null: nothing sent). */
  prev: SentRoom | null;
}

/** A request's starting point: the head as it will be saved, and the position answered from. */
export interface ResolvedPosition {
  head: ConnectionHead;
  /** The position the request's `pos` named (the root of a new connection). */
  base: PositionState;
  /** True when the request had no `pos`: a new connection. */
  isNew: boolean;
}

/** 400 M_UNKNOWN_POS: the client must start a new connection. */
export function unknownPos(message = "Unknown or expired pos"): MatrixError {
  return new MatrixError("M_UNKNOWN_POS", 400, message);
}

/** The `pos` string of a position (opaque to the client). */
export function encodePos(generation: string, position: PositionState): string {
  return `${generation}_${position.depth}_${position.attempt}`;
}

const POS = /^([0-9a-f]{1,16})_([0-9]{1,9})_([0-9a-f]{1,16})$/;

/** A fresh random hex string (generations and attempts). */
export function randomId(bytes = 6): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return [...raw].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The head of a new connection: only the root position. */
export function newConnection(generation = randomId()): ConnectionHead {
  return {
    generation,
    confirmed: { depth: 0, attempt: "", token: "", subscriptions: {}, listCounts: {} },
    issued: [],
    issuedCount: 0,
    forks: {},
    configs: {},
  };
}

/**
 * Where a request starts. No `pos`: a new connection. A `pos` naming the confirmed position
 * (a retry) or one of its issued children (which it then confirms) is answered from; any
 * other (older, from another connection start, malformed, never issued) is M_UNKNOWN_POS.
 */
export function resolvePosition(
  loaded: ConnectionHead | undefined,
  pos: string | undefined,
): ResolvedPosition {
  if (pos === undefined) {
    const head = newConnection();
    return { head, base: head.confirmed, isNew: true };
  }
  const match = pos.length <= MAX_POS_LENGTH ? POS.exec(pos) : null;
  if (!match || !loaded || loaded.generation !== match[1]) throw unknownPos();
  const depth = Number(match[2]);
  const attempt = match[3];
  const confirmed = loaded.confirmed;
  if (depth > 0 && confirmed.depth === depth && confirmed.attempt === attempt) {
    return { head: loaded, base: confirmed, isNew: false };
  }
  const child = loaded.issued.find((p) => p.depth === depth && p.attempt === attempt);
  if (!child) throw unknownPos();
  const forks = { ...loaded.forks };
  if (loaded.issuedCount > 1) {
    forks[String(depth)] = attempt;
    if (Object.keys(forks).length > MAX_FORKS) throw unknownPos("Connection retried too often");
  }
  const head: ConnectionHead = {
    generation: loaded.generation,
    confirmed: child,
    issued: [],
    issuedCount: 0,
    forks,
    configs: pickConfigs(loaded.configs, [child]),
  };
  return { head, base: child, isNew: false };
}

/** What the connection held for a room as of `base` (null: never sent, or sent from scratch). */
export function effectiveRoom(
  head: ConnectionHead,
  base: PositionState,
  entry: RoomEntry | undefined,
): SentRoom | null {
  if (!entry || entry.generation !== head.generation) return null;
  if (entry.depth > base.depth) return entry.prev;
  // The attempt on the chain at the record's depth: the base itself, the one the client
  // confirmed where a pos was retried, or else the only one ever issued there.
  const onChain = entry.depth === base.depth
    ? base.attempt
    : head.forks[String(entry.depth)] ?? Object.keys(entry.values)[0];
  return Object.hasOwn(entry.values, onChain) ? entry.values[onChain] : entry.prev;
}

/** The next position's identity: a child of `base`. */
export function childOf(
  base: PositionState,
  fields: Pick<PositionState, "token" | "subscriptions" | "listCounts">,
): PositionState {
  return { depth: base.depth + 1, attempt: randomId(4), ...fields };
}

/**
 * The head after issuing `child` of the confirmed position, keeping `subscriptionConfigs`
 * (config key -> config) for its subscriptions and only the configs some kept position names.
 */
export function withIssued(
  head: ConnectionHead,
  child: PositionState,
  subscriptionConfigs: Readonly<Record<string, RoomConfig>>,
): ConnectionHead {
  const issued = [...head.issued, child].slice(-MAX_ISSUED);
  return {
    ...head,
    issued,
    issuedCount: head.issuedCount + 1,
    configs: pickConfigs({ ...head.configs, ...subscriptionConfigs }, [head.confirmed, ...issued]),
  };
}

/** A room's record after `child` sent it (`sent`), keeping the value as of its parent. */
export function stampRoom(
  head: ConnectionHead,
  base: PositionState,
  child: PositionState,
  previous: RoomEntry | undefined,
  sent: SentRoom,
): RoomEntry {
  // A sibling (another answer to the same pos) stamped it first: keep its value beside ours,
  // since the client may go on from either; their parent's value stays `prev`.
  const sibling = previous !== undefined && previous.generation === head.generation &&
    previous.depth === child.depth;
  if (sibling) {
    const values = Object.fromEntries(
      Object.entries(previous.values).slice(-(MAX_ISSUED - 1)),
    );
    return { ...previous, values: { ...values, [child.attempt]: sent } };
  }
  return {
    generation: head.generation,
    depth: child.depth,
    values: { [child.attempt]: sent },
    prev: effectiveRoom(head, base, previous),
  };
}

/** A config's key: equal configs (after normalising) have equal keys. */
export async function configKey(config: RoomConfig): Promise<string> {
  const text = JSON.stringify([config.timelineLimit, config.requiredState]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).subarray(0, 12)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function pickConfigs(
  configs: Readonly<Record<string, RoomConfig>>,
  positions: readonly PositionState[],
): Record<string, RoomConfig> {
  const out: Record<string, RoomConfig> = {};
  for (const position of positions) {
    for (const key of Object.values(position.subscriptions)) {
      if (configs[key]) out[key] = configs[key];
    }
  }
  return out;
}
