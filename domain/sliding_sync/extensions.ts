/**
 * The extensions of a sliding-sync answer (MSC4186 with MSC3885 to-device, MSC3884 e2ee,
 * MSC3959 account data, MSC3960 receipts, MSC3961 typing), shaped as Synapse answers them.
 *
 * No extension reads storage on its own: each runs the /sync stream providers that already
 * exist (to-device, device lists, signature notices, key counts, account data, push rules,
 * typing, receipts) over a scratch SyncResponse for the window (since, upTo] and reshapes what
 * they wrote. So an extension sees exactly what /sync would, with the same private-receipt,
 * expired-typing and to-device acknowledgement rules.
 *
 * Per-room extensions cover only the rooms of this answer (its lists' ranges and its room
 * subscriptions) that the request's `lists` and `rooms` scope names ("*": all). Each room
 * carries the position the client holds its data up to, so a room new to the connection (or
 * back after being out of range) gets what it missed, not just the last window: rooms are
 * grouped by that position and the providers run once per group (a bounded number).
 */
import { z } from "zod";
import type { JsonObject } from "../protocol/json.ts";
import type { ToDeviceEvent } from "../ports/to_device_store.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import { emptySyncResponse, type SyncResponse } from "../sync/sync_response.ts";
import type { ListedMembership } from "./room_list.ts";

// ---- Request ----

/** Most to-device messages in one answer, whatever the request's `limit` (Synapse's cap). */
export const TO_DEVICE_EXTENSION_MAX = 100;

/** A sync token as the event store issues it (`s` + 20 hex digits): a to-device `since`. */
const syncToken = z.string().regex(/^s[0-9a-f]{20}$/, "must be a next_batch from this server");

/**
 * The `lists` / `rooms` scope of a per-room extension. Absent means `["*"]` (all lists, all
 * room subscriptions), as Synapse defaults them; null or `[]` means none.
 */
const scopeFields = {
  enabled: z.boolean().nullish(),
  lists: z.array(z.string().max(64)).max(100).nullish(),
  rooms: z.array(z.string().max(255)).max(1000).nullish(),
};

/**
 * The request's `extensions` object: zod schema for the route's edge. Unknown extensions are
 * dropped (a client may ask for ones this server does not have); `null` reads as absent.
 */
export const extensionsRequestSchema = z.object({
  to_device: z.object({
    enabled: z.boolean().nullish(),
    limit: z.number().int().min(0).nullish(),
    since: syncToken.nullish(),
  }).nullish(),
  e2ee: z.object({ enabled: z.boolean().nullish() }).nullish(),
  account_data: z.object(scopeFields).nullish(),
  receipts: z.object(scopeFields).nullish(),
  typing: z.object(scopeFields).nullish(),
});

/** A parsed `extensions` request. An extension runs only when its `enabled` is true. */
export type ExtensionsRequest = z.infer<typeof extensionsRequestSchema>;

/** A per-room extension's parsed request (`enabled`, `lists`, `rooms`). */
export type ScopedExtensionRequest = NonNullable<ExtensionsRequest["receipts"]>;

// ---- Response ----

/** An account data event as /sync carries it. */
export interface AccountDataEvent {
  type: string;
  content: JsonObject;
}

/** An ephemeral room event (`m.receipt`, `m.typing`) of an extension. */
export interface EphemeralRoomEvent {
  type: string;
  content: JsonObject;
}

/** The `to_device` extension's answer (MSC3885). */
export interface ToDeviceExtensionResponse {
  /** Pass back as `extensions.to_device.since`: acknowledges (deletes) `events`. */
  next_batch: string;
  events: ToDeviceEvent[];
}

/** The `e2ee` extension's answer (MSC3884). */
export interface E2eeExtensionResponse {
  /** Only on a connection's later requests: a new connection refetches every list anyway. */
  device_lists?: { changed: string[]; left: string[] };
  device_one_time_keys_count: Record<string, number>;
  device_unused_fallback_key_types: string[];
}

/** The `account_data` extension's answer (MSC3959). */
export interface AccountDataExtensionResponse {
  global: AccountDataEvent[];
  rooms: Record<string, AccountDataEvent[]>;
}

/** The `receipts` extension's answer (MSC3960): one `m.receipt` event per room. */
export interface ReceiptsExtensionResponse {
  rooms: Record<string, EphemeralRoomEvent>;
}

/** The `typing` extension's answer (MSC3961): one `m.typing` event per room. */
export interface TypingExtensionResponse {
  rooms: Record<string, EphemeralRoomEvent>;
}

/** The answer's `extensions`: an extension is present when the request enabled it. */
export interface ExtensionsResponse {
  to_device?: ToDeviceExtensionResponse;
  e2ee?: E2eeExtensionResponse;
  account_data?: AccountDataExtensionResponse;
  receipts?: ReceiptsExtensionResponse;
  typing?: TypingExtensionResponse;
}

// ---- Context and providers ----

/** One room of the answer, as the extensions need it. */
export interface ExtensionRoom {
  /** The user's membership: typing and receipts go to joined rooms only. */
  membership: ListedMembership;
  /**
   * The position the client holds this room's data up to on the connection: the position of
   * the last answer that carried something of the room (a quiet room keeps an older one; the
   * connection's previous position is the newest it can be). Absent when the client holds none
   * of it (the room is new to the connection, or sent again from scratch): it then gets the
   * room's current receipts, typing and account data.
   */
  since?: string;
  /**
   * For a room sent from scratch: the IDs of its timeline events in this answer. Its receipts
   * are then those on these events and the user's own (Synapse's rule, so a large room does
   * not send every member's receipt); absent, all of its current receipts.
   */
  timelineEventIds?: readonly string[];
}

/** What `buildExtensions` needs to know of the request being answered. */
export interface ExtensionContext {
  userId: string;
  deviceId: string;
  /** The connection's previous position (a sync token); absent on a new connection. */
  since?: string;
  /** The answer's position (the sync barrier token): nothing newer is included. */
  upTo: string;
  /** Per list name, the room IDs its ranges put in this answer. */
  lists: Readonly<Record<string, readonly string[]>>;
  /** The room IDs of the room subscriptions in this answer. */
  subscriptions: readonly string[];
  /** Every room of `lists` and `subscriptions`; a room missing here gets no per-room data. */
  rooms: ReadonlyMap<string, ExtensionRoom>;
  /** Now (ms since the epoch), for typing expiry. */
  now: number;
}

/**
 * The /sync stream providers the extensions run (main.ts builds them once; see
 * `extensionProvidersFrom`).
 */
export interface ExtensionProviders {
  /** The to-device stream, handing out at most `limit` messages. */
  toDevice(limit: number): SyncStreamProvider;
  /** Fill `device_lists` (the device-list and signature-notice streams). */
  deviceLists: readonly SyncStreamProvider[];
  /** Fill the one-time key counts and unused fallback key types. */
  keyCounts: SyncStreamProvider;
  /** Fill global `account_data` (account data, push rules) and rooms' `account_data`. */
  accountData: readonly SyncStreamProvider[];
  /** Fill rooms' `m.receipt`. */
  receipts: SyncStreamProvider;
  /** Fill rooms' `m.typing`. */
  typing: SyncStreamProvider;
}

/** The /sync stream names `extensionProvidersFrom` picks (SyncStreamProvider.name). */
const STREAMS = {
  deviceLists: ["device_lists", "signature_notices"],
  keyCounts: "one_time_keys",
  accountData: ["account_data", "push_rules"],
  receipts: "receipts",
  typing: "typing",
} as const;

/**
 * Pick the extensions' providers out of /sync's provider list by name, so both endpoints run
 * the very same instances. `toDevice` builds the to-device stream with a request's limit.
 */
export function extensionProvidersFrom(
  streams: readonly SyncStreamProvider[],
  toDevice: (limit: number) => SyncStreamProvider,
): ExtensionProviders {
  const byName = new Map(streams.map((s) => [s.name, s]));
  const one = (name: string): SyncStreamProvider => {
    const found = byName.get(name);
    if (!found) throw new Error(`sliding sync extensions: no /sync stream named ${name}`);
    return found;
  };
  return {
    toDevice,
    deviceLists: STREAMS.deviceLists.map(one),
    keyCounts: one(STREAMS.keyCounts),
    accountData: STREAMS.accountData.map(one),
    receipts: one(STREAMS.receipts),
    typing: one(STREAMS.typing),
  };
}

// ---- Building ----

/** Build the answer's `extensions` for what `request` enabled. */
export async function buildExtensions(
  request: ExtensionsRequest | undefined,
  ctx: ExtensionContext,
  providers: ExtensionProviders,
): Promise<ExtensionsResponse> {
  const response: ExtensionsResponse = {};
  if (!request) return response;
  const work: Promise<void>[] = [];
  if (request.to_device?.enabled) {
    const ext = request.to_device;
    work.push(
      toDeviceExtension(ext.since ?? undefined, ext.limit ?? undefined, ctx, providers)
        .then((r) => void (response.to_device = r)),
    );
  }
  if (request.e2ee?.enabled) {
    work.push(e2eeExtension(ctx, providers).then((r) => void (response.e2ee = r)));
  }
  if (request.account_data?.enabled) {
    const roomIds = scopedRoomIds(request.account_data, ctx);
    work.push(
      accountDataExtension(roomIds, ctx, providers).then((r) => void (response.account_data = r)),
    );
  }
  if (request.receipts?.enabled) {
    const roomIds = joinedOnly(scopedRoomIds(request.receipts, ctx), ctx);
    work.push(
      receiptsExtension(roomIds, ctx, providers).then((r) => void (response.receipts = r)),
    );
  }
  if (request.typing?.enabled) {
    const roomIds = joinedOnly(scopedRoomIds(request.typing, ctx), ctx);
    work.push(
      ephemeralExtension("m.typing", roomIds, ctx, providers.typing)
        .then((rooms) => void (response.typing = { rooms })),
    );
  }
  await Promise.all(work);
  return response;
}

/**
 * Whether the extensions carry something a client acts on, so a long-poll answers now. Key
 * counts alone do not (a snapshot, as in /sync's `isEmptySyncResponse`), nor does a to-device
 * `next_batch` without events.
 */
export function hasExtensionNews(response: ExtensionsResponse): boolean {
  const { to_device, e2ee, account_data, receipts, typing } = response;
  return (to_device?.events.length ?? 0) > 0 ||
    (e2ee?.device_lists?.changed.length ?? 0) > 0 ||
    (e2ee?.device_lists?.left.length ?? 0) > 0 ||
    (account_data?.global.length ?? 0) > 0 ||
    Object.keys(account_data?.rooms ?? {}).length > 0 ||
    Object.keys(receipts?.rooms ?? {}).length > 0 ||
    Object.keys(typing?.rooms ?? {}).length > 0;
}

/**
 * The answer's rooms a per-room extension covers: those of the lists its `lists` names and
 * the subscriptions its `rooms` names, `"*"` meaning all (Synapse's
 * find_relevant_room_ids_for_extension). A name absent from the answer adds nothing.
 */
export function scopedRoomIds(scope: ScopedExtensionRequest, ctx: ExtensionContext): string[] {
  const relevant = new Set<string>();
  // Absent scopes default to everything; an explicit null or [] selects nothing.
  const lists = scope.lists === undefined ? ["*"] : scope.lists ?? [];
  const rooms = scope.rooms === undefined ? ["*"] : scope.rooms ?? [];
  if (lists.includes("*")) {
    for (const ids of Object.values(ctx.lists)) for (const id of ids) relevant.add(id);
  } else {
    for (const name of lists) {
      if (Object.hasOwn(ctx.lists, name)) { for (const id of ctx.lists[name]) relevant.add(id); }
    }
  }
  const subscribed = new Set(ctx.subscriptions);
  if (rooms.includes("*")) {
    for (const id of subscribed) relevant.add(id);
  } else {
    for (const id of rooms) if (subscribed.has(id)) relevant.add(id);
  }
  // A room the caller did not describe has no known membership: send it nothing.
  return [...relevant].filter((id) => ctx.rooms.has(id));
}

function joinedOnly(roomIds: readonly string[], ctx: ExtensionContext): string[] {
  return roomIds.filter((id) => ctx.rooms.get(id)?.membership === "join");
}

/** The scratch request a provider fills: the window (since, ctx.upTo] over `roomIds`. */
function streamRequest(
  ctx: ExtensionContext,
  since: string | undefined,
  roomIds: readonly string[],
): SyncStreamRequest {
  return {
    userId: ctx.userId,
    deviceId: ctx.deviceId,
    since,
    upTo: ctx.upTo,
    // No `since` is the providers' full-sync path: a room sent from scratch gets its current
    // data. `fullState` would also drop `since` for rooms the client is up to date on.
    fullState: false,
    filter: {},
    joinedRoomIds: roomIds,
    now: ctx.now,
  };
}

/**
 * Most windows one per-room extension reads in a request. The service keeps a room's position
 * where it last sent the room something, so quiet rooms in range hold many different older
 * positions; each distinct one is a window of its own (exact: nothing repeated, so no long-poll
 * answers early with old news), up to this many.
 */
export const MAX_EXTENSION_WINDOWS = 16;

/**
 * Group rooms by the position their client holds them up to (absent: none), one group per
 * distinct position, newest first. Past MAX_EXTENSION_WINDOWS the oldest positions share one
 * window from the oldest of them, so a request's reads stay bounded however many rooms it has:
 * a room there may get again something it had (receipts, typing and account data carry the
 * latest value per key, so a repeat changes nothing on the client), once, since the service
 * then records it as sent at this answer.
 */
function bySince(
  roomIds: readonly string[],
  ctx: ExtensionContext,
): Map<string | undefined, string[]> {
  const groups = new Map<string | undefined, string[]>();
  for (const id of roomIds) {
    const held = ctx.since === undefined ? undefined : ctx.rooms.get(id)?.since;
    // A position past the connection's is the connection's (the client cannot hold more).
    const since = held !== undefined && held > ctx.since! ? ctx.since : held;
    const group = groups.get(since);
    if (group) group.push(id);
    else groups.set(since, [id]);
  }
  if (groups.size <= MAX_EXTENSION_WINDOWS) return groups;
  // Tokens are fixed width: they compare as text. Absent (none held) sorts first, kept exact.
  const order = [...groups.keys()].sort((a, b) =>
    a === b ? 0 : a === undefined ? -1 : b === undefined ? 1 : a > b ? -1 : 1
  );
  const kept = new Map(order.slice(0, MAX_EXTENSION_WINDOWS - 1).map((k) => [k, groups.get(k)!]));
  const rest = order.slice(MAX_EXTENSION_WINDOWS - 1);
  kept.set(rest.at(-1), rest.flatMap((k) => groups.get(k)!));
  return kept;
}

async function toDeviceExtension(
  since: string | undefined,
  limit: number | undefined,
  ctx: ExtensionContext,
  providers: ExtensionProviders,
): Promise<ToDeviceExtensionResponse> {
  const scratch = emptySyncResponse(ctx.upTo);
  const cap = Math.min(limit ?? TO_DEVICE_EXTENSION_MAX, TO_DEVICE_EXTENSION_MAX);
  // The extension's own `since` (not the connection's): the store acknowledges what was handed
  // out under it and records this hand-out under `upTo`, the `next_batch` returned.
  await providers.toDevice(cap).fill(streamRequest(ctx, since, []), scratch);
  const events = scratch.to_device.events.map((e) => ({ ...typed(e), sender: String(e.sender) }));
  return { next_batch: ctx.upTo, events };
}

/** An event a provider wrote as plain JSON, with the type and content it always has. */
function typed(event: JsonObject): { type: string; content: JsonObject } {
  return { type: String(event.type), content: event.content as JsonObject };
}

async function e2eeExtension(
  ctx: ExtensionContext,
  providers: ExtensionProviders,
): Promise<E2eeExtensionResponse> {
  const scratch = emptySyncResponse(ctx.upTo);
  const request = streamRequest(ctx, ctx.since, []);
  // The device-list streams dedupe against what the other already pushed: same scratch.
  await Promise.all([
    ...providers.deviceLists.map((p) => p.fill(request, scratch)),
    providers.keyCounts.fill(request, scratch),
  ]);
  const response: E2eeExtensionResponse = {
    device_one_time_keys_count: scratch.device_one_time_keys_count,
    device_unused_fallback_key_types: scratch.device_unused_fallback_key_types,
  };
  if (ctx.since !== undefined) response.device_lists = scratch.device_lists;
  return response;
}

async function accountDataExtension(
  roomIds: readonly string[],
  ctx: ExtensionContext,
  providers: ExtensionProviders,
): Promise<AccountDataExtensionResponse> {
  const groups = bySince(roomIds, ctx);
  // Global account data follows the connection's position: make sure that window is read.
  if (!groups.has(ctx.since)) groups.set(ctx.since, []);
  const response: AccountDataExtensionResponse = { global: [], rooms: {} };
  await Promise.all([...groups].map(async ([since, ids]) => {
    const scratch = emptySyncResponse(ctx.upTo);
    const request = streamRequest(ctx, since, ids);
    const isGlobalWindow = since === ctx.since;
    // Push rules are global only: the window of rooms sent from scratch has no use for them.
    const fills = isGlobalWindow ? providers.accountData : providers.accountData.slice(0, 1);
    await Promise.all(fills.map((p) => p.fill(request, scratch)));
    if (isGlobalWindow) response.global.push(...scratch.account_data.events.map(typed));
    for (const [roomId, room] of Object.entries(scratch.rooms.join)) {
      if (room.account_data.events.length === 0) continue;
      response.rooms[roomId] = room.account_data.events.map(typed);
    }
  }));
  return response;
}

async function receiptsExtension(
  roomIds: readonly string[],
  ctx: ExtensionContext,
  providers: ExtensionProviders,
): Promise<ReceiptsExtensionResponse> {
  const rooms = await ephemeralExtension("m.receipt", roomIds, ctx, providers.receipts);
  for (const [roomId, event] of Object.entries(rooms)) {
    const room = ctx.rooms.get(roomId);
    const fromScratch = ctx.since === undefined || room?.since === undefined;
    if (!fromScratch || room?.timelineEventIds === undefined) continue;
    const trimmed = receiptsForTimeline(event.content, room.timelineEventIds, ctx.userId);
    if (Object.keys(trimmed).length === 0) delete rooms[roomId];
    else rooms[roomId] = { type: "m.receipt", content: trimmed };
  }
  return { rooms };
}

/**
 * An `m.receipt` content cut to the receipts on `eventIds` and the user's own, the receipts a
 * room sent from scratch carries.
 */
export function receiptsForTimeline(
  content: JsonObject,
  eventIds: readonly string[],
  userId: string,
): JsonObject {
  const shown = new Set(eventIds);
  const out: Record<string, Record<string, Record<string, JsonObject>>> = {};
  for (const [eventId, byType] of Object.entries(content)) {
    for (const [receiptType, byUser] of Object.entries(byType as JsonObject)) {
      for (const [reader, data] of Object.entries(byUser as JsonObject)) {
        if (!shown.has(eventId) && reader !== userId) continue;
        ((out[eventId] ??= {})[receiptType] ??= {})[reader] = data as JsonObject;
      }
    }
  }
  return out;
}

/** Run a per-room ephemeral provider and keep its events of `type`, one per room. */
async function ephemeralExtension(
  type: string,
  roomIds: readonly string[],
  ctx: ExtensionContext,
  provider: SyncStreamProvider,
): Promise<Record<string, EphemeralRoomEvent>> {
  const rooms: Record<string, EphemeralRoomEvent> = {};
  if (roomIds.length === 0) return rooms;
  await Promise.all([...bySince(roomIds, ctx)].map(async ([since, ids]) => {
    const scratch: SyncResponse = emptySyncResponse(ctx.upTo);
    await provider.fill(streamRequest(ctx, since, ids), scratch);
    for (const [roomId, room] of Object.entries(scratch.rooms.join)) {
      const event = room.ephemeral.events.find((e) => e.type === type);
      if (event) rooms[roomId] = { type, content: event.content as JsonObject };
    }
  }));
  return rooms;
}
