/**
 * One room's entry in a sliding-sync answer (MSC4186): its timeline, the `required_state` its
 * config asks for, name, avatar, heroes and counts. An initial entry (the room not sent before
 * on the connection, or sent with another config) carries everything; an incremental one only
 * what changed after the position the room was last sent at. Events leave through the read
 * pipeline, as /sync's do (its timeline walk and summary are reused).
 */
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { type StateKey, stateKey, type StateMap } from "../protocol/events.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import type { EventStore, RoomChanges, StoredEvent } from "../ports/event_store.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "../room_events/read_pipeline.ts";
import {
  membershipAtSince,
  membershipAtToken,
  type NotificationCounts,
  roomSummary,
} from "../sync/room_stream.ts";
import { loadTimeline, type TimelineBatch } from "../sync/room_timeline.ts";
import { isAfter, syncTokenAt } from "../sync/sync_token.ts";
import type { UnreadCounts } from "../sync/sync_response.ts";
import { LAZY, ME, type RoomConfig, WILDCARD } from "./room_config.ts";

export type { RoomConfig } from "./room_config.ts";

/** A hero: a member a client names an unnamed room after. */
export interface SlidingHero {
  user_id: string;
  displayname?: string;
  avatar_url?: string;
}

/** The per-room JSON of an MSC4186 answer; absent fields did not change (incremental). */
export interface SlidingRoomResponse {
  /** The room's `m.room.name`, when set (initial) or changed (incremental). */
  name?: string;
  /** The room's `m.room.avatar` URL, when set or changed. */
  avatar?: string;
  /** Other members to name an unnamed room after (like /sync's `m.heroes`). */
  heroes?: SlidingHero[];
  /** True when this entry replaces whatever the client held for the room. */
  initial?: boolean;
  is_dm?: boolean;
  /** Stripped state of an invite. */
  invite_state?: JsonObject[];
  /** Stripped state of a knock. */
  knock_state?: JsonObject[];
  /** State events the config asks for: all on an initial entry, changed ones after. */
  required_state?: JsonObject[];
  /** Timeline events, oldest first. */
  timeline?: JsonObject[];
  /** A /messages `from` token before the first timeline event. */
  prev_batch?: string;
  /** More events precede the timeline than it holds. */
  limited?: boolean;
  /** How many of the timeline's events are new since the connection's previous position. */
  num_live?: number;
  bump_stamp?: number;
  joined_count?: number;
  invited_count?: number;
  notification_count?: number;
  highlight_count?: number;
}

/** What `buildRoom` needs for one room. */
export interface BuildRoomParams {
  userId: string;
  deviceId?: string;
  roomId: string;
  /** The merged config of the lists and subscriptions that include the room. */
  config: RoomConfig;
  /**
   * The position this room was last sent at on the connection, with this same config; absent:
   * an initial entry (first time, or the config changed).
   */
  since?: string;
  /** The connection's previous position (`num_live` counts events after it); absent: new. */
  previousPos?: string;
  /** The answer's position (a sync token): nothing newer is shown. */
  upTo: string;
  /** From the room list (the stream position of the last bump event). */
  bumpStamp?: number;
  isDm?: boolean;
  /**
   * The user's member event as of `upTo`, when the caller has it (the room list read it);
   * absent, it is read here.
   */
  membership?: StoredEvent;
  /** The room version of a room known only from a remote invite or knock. */
  remoteRoomVersion?: string;
  /** The reader's ignore list when already read for the request (read once for all rooms). */
  ignored?: IgnoredUsers;
  /**
   * Unread counts when the caller read them for every room at once (one `countsFor` call);
   * absent, read here. The room's whole counts, threads included: MSC4186 has no per-thread
   * counts.
   */
  counts?: UnreadCounts;
}

/** What room data is read from: the event store, the read pipeline, /sync's unread counts. */
export interface RoomDataDeps {
  store: EventStore;
  /** Every event shown goes through it (visibility, redaction, ignored users, format). */
  pipeline: ReadPipeline;
  /** Unread notification counts (/sync's); absent, counts are zero. */
  notificationCounts?: NotificationCounts;
  /** Memberships in rooms this server is not in (remote invites and knocks); absent: none. */
  remoteMemberships?: Pick<RemoteMembershipStore, "get">;
}

/** Builds rooms' entries; one instance serves many requests (it holds no per-user state). */
export interface RoomDataBuilderApi {
  /** One room's entry, or undefined when an incremental entry has nothing new to say. */
  buildRoom(params: BuildRoomParams): Promise<SlidingRoomResponse | undefined>;
}

const MEMBER = "m.room.member";
const NAME_KEY = stateKey("m.room.name", "");
const AVATAR_KEY = stateKey("m.room.avatar", "");

/** Room entries from the event store, through the read pipeline. */
export class RoomDataBuilder implements RoomDataBuilderApi {
  /** Over the store, the pipeline and the unread counts. */
  constructor(private readonly deps: RoomDataDeps) {}

  /** One room's entry, or undefined when an incremental entry has nothing new to say. */
  async buildRoom(params: BuildRoomParams): Promise<SlidingRoomResponse | undefined> {
    const found = params.membership
      ? { event: params.membership, remoteRoomVersion: params.remoteRoomVersion }
      : await this.#membershipAt(params);
    if (!found) return undefined;
    const membership = found.event;
    if (found.remoteRoomVersion !== undefined) {
      params = { ...params, remoteRoomVersion: found.remoteRoomVersion };
    }
    const kind = membership.pdu.content.membership;
    // A membership already sent that has not changed since: nothing new for an invite,
    // knock or left room (their entries end at the membership event).
    const changedSince = params.since === undefined ||
      isAfter(membership.versionstamp, params.since);
    if (kind === "invite" || kind === "knock") {
      return changedSince ? await this.#stripped(params, membership, kind) : undefined;
    }
    if (kind === "join") return await this.#room(params, membership, false);
    if (kind === "leave" || kind === "ban") {
      return changedSince ? await this.#room(params, membership, true) : undefined;
    }
    return undefined;
  }

  /**
   * The member event as of `upTo` (the projection holds the current one), or the remote
   * membership (an invite or knock over federation) when that is newer, as /sync places them.
   */
  async #membershipAt(
    params: BuildRoomParams,
  ): Promise<{ event: StoredEvent; remoteRoomVersion?: string } | undefined> {
    const { store, pipeline, remoteMemberships } = this.deps;
    const [current, remote] = await Promise.all([
      pipeline.membershipOf(params.userId, params.roomId),
      remoteMemberships?.get(params.userId, params.roomId) ?? null,
    ]);
    let local: StoredEvent | undefined = current ?? undefined;
    if (local && isAfter(local.versionstamp, params.upTo)) {
      local = await membershipAtToken(store, params.roomId, params.userId, params.upTo);
    }
    if (
      remote && !isAfter(remote.versionstamp, params.upTo) &&
      (!local || local.versionstamp < remote.versionstamp)
    ) {
      const event: StoredEvent = {
        eventId: remote.eventId,
        roomId: remote.roomId,
        pdu: remote.pdu,
        status: "accepted",
        position: 0,
        versionstamp: remote.versionstamp,
      };
      return { event, remoteRoomVersion: remote.roomVersion };
    }
    return local ? { event: local } : undefined;
  }

  /** An invite's or knock's entry: its stripped state (none from an ignored inviter). */
  async #stripped(
    params: BuildRoomParams,
    membership: StoredEvent,
    kind: "invite" | "knock",
  ): Promise<SlidingRoomResponse | undefined> {
    const { pipeline } = this.deps;
    const [ignored, version] = await Promise.all([
      params.ignored ?? pipeline.ignoredUsers(params.userId),
      params.remoteRoomVersion !== undefined
        ? roomVersion(params.remoteRoomVersion)
        : this.#version(params.roomId),
    ]);
    const events = await pipeline.strippedState(membership, ignored, version);
    if (events === undefined) return undefined;
    const entry: SlidingRoomResponse = { initial: true };
    if (kind === "invite") entry.invite_state = events;
    else entry.knock_state = events;
    // Name and avatar as the stripped state shows them (the room may not be on this server).
    for (const event of events) {
      if (event.state_key !== "" || !isJsonObject(event.content)) continue;
      if (event.type === "m.room.name" && typeof event.content.name === "string") {
        entry.name = event.content.name;
      }
      if (event.type === "m.room.avatar" && typeof event.content.url === "string") {
        entry.avatar = event.content.url;
      }
    }
    if (params.isDm !== undefined) entry.is_dm = params.isDm;
    if (params.bumpStamp !== undefined) entry.bump_stamp = params.bumpStamp;
    return entry;
  }

  /**
   * A joined room's entry, or a left room's ending at the leave (later events are not the
   * user's to see): the timeline of the window, the required state at its end, the summary.
   */
  async #room(
    params: BuildRoomParams,
    membership: StoredEvent,
    left: boolean,
  ): Promise<SlidingRoomResponse | undefined> {
    const { store, pipeline } = this.deps;
    const { roomId, userId, config } = params;
    const version = await this.#version(roomId);
    if (!version) return undefined; // no log here: nothing to show
    // A room joined after it was last sent: the client holds none of its recent history, so
    // it gets an initial entry, as /sync gives a room joined in the window.
    const initial = params.since === undefined ||
      (!left && await this.#joinedAfter(membership, params.since));
    const since = initial ? undefined : params.since;
    const upTo = left ? syncTokenAt(membership.versionstamp) : params.upTo;
    const limit = config.timelineLimit;
    const [[change], ignored] = await Promise.all([
      store.roomChanges({ roomIds: [roomId], since, upTo, limit: Math.max(1, limit) }),
      params.ignored ?? pipeline.ignoredUsers(userId),
    ]);
    const newest = left ? membership : change?.events.at(-1);
    // Nothing in the room after `since`: neither its timeline nor its state changed.
    if (!initial && (change === undefined || change.events.length === 0)) return undefined;
    const read: RoomRead = {
      reader: { userId, deviceId: params.deviceId },
      roomId,
      version,
      // Visibility is judged as of the answer's position, like /sync's barrier.
      membership,
      format: "client",
      prevContent: true,
      ignored,
      aggregations: initial || change?.limited === true,
    };
    const [batch, end] = await Promise.all([
      loadTimeline(store, pipeline, {
        roomId,
        since,
        first: change,
        maxPosition: left ? membership.position : undefined,
        limit,
        read,
      }),
      newest
        ? store.stateAtEvent(newest.eventId, "after").then((m) => m ?? new Map() as StateMap)
        : store.currentState(roomId),
    ]);
    const [required, summary, counts, prevBatch] = await Promise.all([
      this.#requiredState(params, end, batch, since),
      // Heroes and counts of a room the user left would be today's, not those they saw.
      !left && (initial || memberChanged(batch, change))
        ? roomSummary(store, roomId, userId)
        : undefined,
      left ? undefined : this.#counts(params),
      batch.prevBatch ?? store.timeline(roomId, { dir: "b", limit: 1 }).then((p) => p.start),
    ]);
    const profileKeys = summaryHeroes(summary).map((u) => stateKey(MEMBER, u));
    const nameIds = [NAME_KEY, AVATAR_KEY, ...profileKeys].flatMap((k) => end.get(k) ?? []);
    const named = await store.getEvents(nameIds);
    // The name, avatar and heroes' profiles leave through the pipeline like the required state
    // (one pass for both): a redacted name is no name, a redacted profile no display name.
    const requiredIds = new Set(required.map((e) => e.eventId));
    const shownStates = [
      ...required,
      ...[...named.values()].filter((e) => !requiredIds.has(e.eventId)),
    ];
    const shown = new Map<string, JsonObject>(
      (shownStates.length === 0
        ? []
        : (await pipeline.readRoom(read, { state: shownStates })).state)
        .map((e): [string, JsonObject] => [e.event_id as string, e]),
    );
    const state = required.map((e) => shown.get(e.eventId)).filter((e) => e !== undefined);
    /** A state event of `end` as stored (when it was set) and as the pipeline shows it. */
    const shownAt = (key: StateKey) => {
      const id = end.get(key) ?? "";
      const event = named.get(id);
      const out = shown.get(id);
      return event && out && isJsonObject(out.content)
        ? { event, content: out.content }
        : undefined;
    };

    const entry: SlidingRoomResponse = {};
    if (initial) entry.initial = true;
    const nameEvent = shownAt(NAME_KEY);
    if (nameEvent && (initial || isAfter(nameEvent.event.versionstamp, since!))) {
      const name = nameEvent.content.name;
      // An empty name is no name (spec, m.room.name): heroes name the room instead.
      if (typeof name === "string" && name !== "") entry.name = name;
    }
    const avatarEvent = shownAt(AVATAR_KEY);
    if (avatarEvent && (initial || isAfter(avatarEvent.event.versionstamp, since!))) {
      const url = avatarEvent.content.url;
      if (typeof url === "string") entry.avatar = url;
    }
    if (summary) {
      const heroes = summaryHeroes(summary);
      if (heroes.length > 0) {
        entry.heroes = heroes.map((u) => hero(u, shownAt(stateKey(MEMBER, u))?.content));
      }
      entry.joined_count = numberOf(summary["m.joined_member_count"]);
      entry.invited_count = numberOf(summary["m.invited_member_count"]);
    }
    if (params.isDm !== undefined && initial) entry.is_dm = params.isDm;
    if (initial || state.length > 0) entry.required_state = state;
    if (initial || batch.events.length > 0) {
      entry.timeline = batch.events;
      entry.prev_batch = prevBatch;
      entry.limited = batch.limited;
      entry.num_live = params.previousPos === undefined
        ? 0
        : batch.kept.filter((e) => isAfter(e.versionstamp, params.previousPos!)).length;
    }
    // An incremental entry whose window the pipeline hid entirely, with no state the config
    // asks for and no new name, says nothing: the room is left out, as /sync leaves it out.
    // With `timeline_limit: 0` no timeline is read at all: the window's events still move the
    // room's bump stamp and counts, which the client only learns from the entry (else a room
    // list without timelines never heard of new messages, nor woke a long-poll for them).
    if (
      !initial && limit > 0 && entry.timeline === undefined &&
      entry.required_state === undefined && entry.name === undefined &&
      entry.avatar === undefined && summary === undefined
    ) return undefined;
    if (params.bumpStamp !== undefined) entry.bump_stamp = params.bumpStamp;
    if (counts) {
      entry.notification_count = counts.notification_count;
      entry.highlight_count = counts.highlight_count;
    }
    return entry;
  }

  /**
   * The state events the config asks for, as of the window's end: all of them on an initial
   * entry, those set after `since` on an incremental one. `$LAZY` is the member events of the
   * timeline's senders, sent each time they appear: no record is kept of which the client
   * holds, so a sender's membership is never missing.
   */
  async #requiredState(
    params: BuildRoomParams,
    end: StateMap,
    batch: TimelineBatch,
    since: string | undefined,
  ): Promise<StoredEvent[]> {
    const lazy = new Set(lazyMemberKeys(params.config, batch.kept));
    let keys = [...requiredStateKeys(params.config, end, params.userId, batch.kept)];
    // A walk that covered the whole window saw every event that set state in it: only their
    // keys changed (no event read per selected entry, which a `*` in a large room makes many).
    const walkedAll = since !== undefined && batch.complete;
    if (walkedAll) {
      const changed = new Set(
        batch.walked.flatMap((e) =>
          typeof e.pdu.state_key === "string" ? [stateKey(e.pdu.type, e.pdu.state_key)] : []
        ),
      );
      keys = keys.filter((key) => lazy.has(key) || changed.has(key));
      // A client lazy-loading members keeps those it has current: every membership change
      // of a window it saw whole, hidden from the timeline or not (as Synapse sends them).
      if (lazyMembers(params.config)) {
        for (const key of changed) if (key.startsWith(`${MEMBER}\u0000`)) keys.push(key);
      }
    }
    const wanted = [...new Set(keys)].flatMap((key) => {
      const id = end.get(key);
      return id === undefined ? [] : [[key, id] as const];
    });
    const events = await this.deps.store.getEvents(wanted.map(([, id]) => id));
    return wanted.flatMap(([key, id]) => {
      const event = events.get(id);
      if (!event) return [];
      // Past a window too long to walk, each entry's event tells when it was set.
      if (since === undefined || walkedAll || lazy.has(key)) return [event];
      return isAfter(event.versionstamp, since) ? [event] : [];
    });
  }

  async #counts(params: BuildRoomParams): Promise<BuildRoomParams["counts"]> {
    if (params.counts) return params.counts;
    const counter = this.deps.notificationCounts;
    if (!counter) return { notification_count: 0, highlight_count: 0 };
    const found = await counter.countsFor(params.userId, [params.roomId]);
    return found.get(params.roomId) ?? { notification_count: 0, highlight_count: 0 };
  }

  /** Whether the user's join came after `since` from a membership other than join (/sync's rule). */
  async #joinedAfter(membership: StoredEvent, since: string): Promise<boolean> {
    if (!isAfter(membership.versionstamp, since)) return false;
    return (await membershipAtSince(this.deps.store, membership, since)) !== "join";
  }

  async #version(roomId: string): Promise<RoomVersion | undefined> {
    const head = await this.deps.store.roomHead(roomId);
    return head ? roomVersion(head.roomVersion) : undefined;
  }
}

/**
 * The state keys of `state` a config selects: exact pairs, `*` for any type or state key,
 * `$ME` for the user, `$LAZY` for the timeline's senders (member events only).
 */
export function requiredStateKeys(
  config: RoomConfig,
  state: StateMap,
  userId: string,
  timeline: readonly StoredEvent[],
): Set<StateKey> {
  const keys = new Set<StateKey>(lazyMemberKeys(config, timeline));
  const exact: StateKey[] = [];
  const anyKeyOf = new Set<string>();
  const anyTypeWith = new Set<string>();
  let all = false;
  for (const [type, rawKey] of config.requiredState) {
    if (rawKey === LAZY) continue;
    const key = rawKey === ME ? userId : rawKey;
    if (type === WILDCARD && key === WILDCARD) all = true;
    else if (type === WILDCARD) anyTypeWith.add(key);
    else if (key === WILDCARD) anyKeyOf.add(type);
    else exact.push(stateKey(type, key));
  }
  for (const key of exact) if (state.has(key)) keys.add(key);
  if (all || anyKeyOf.size > 0 || anyTypeWith.size > 0) {
    for (const key of state.keys()) {
      const cut = key.indexOf("\u0000");
      if (all || anyKeyOf.has(key.slice(0, cut)) || anyTypeWith.has(key.slice(cut + 1))) {
        keys.add(key);
      }
    }
  }
  return keys;
}

/** Whether the config asks for `$LAZY` members. */
function lazyMembers(config: RoomConfig): boolean {
  return config.requiredState.some(([t, k]) => k === LAZY && (t === MEMBER || t === WILDCARD));
}

/**
 * The member state keys `$LAZY` selects: the timeline's senders and the targets of its member
 * events (a kick's or an invite's), whom a client must know to show it (as Synapse does).
 */
function lazyMemberKeys(config: RoomConfig, timeline: readonly StoredEvent[]): StateKey[] {
  if (!lazyMembers(config)) return [];
  const users = new Set<string>();
  for (const event of timeline) {
    users.add(event.pdu.sender);
    if (event.pdu.type === MEMBER && typeof event.pdu.state_key === "string") {
      users.add(event.pdu.state_key);
    }
  }
  return [...users].map((u) => stateKey(MEMBER, u));
}

/** Whether member events came in the window, or may have (a gap the timeline did not walk). */
function memberChanged(batch: TimelineBatch, change: RoomChanges | undefined): boolean {
  return !batch.complete || change?.limited === true ||
    batch.walked.some((e) => e.pdu.type === MEMBER);
}

function summaryHeroes(summary: JsonObject | undefined): string[] {
  const heroes = summary?.["m.heroes"];
  return Array.isArray(heroes) ? heroes.filter((u): u is string => typeof u === "string") : [];
}

/** A hero from their member event's content as the read pipeline shows it (redacted or not). */
function hero(userId: string, member: JsonObject | undefined): SlidingHero {
  const out: SlidingHero = { user_id: userId };
  const { displayname, avatar_url } = member ?? {};
  if (typeof displayname === "string") out.displayname = displayname;
  if (typeof avatar_url === "string") out.avatar_url = avatar_url;
  return out;
}

function numberOf(value: unknown): number {
  return typeof value === "number" ? value : 0;
}
