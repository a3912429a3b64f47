/**
 * Device-list tracking for clients: whose device lists a user should re-fetch (`changed`) and
 * whom they can stop tracking (`left`) after a window (since, upTo] of sync tokens. Both /sync's
 * `device_lists` and `GET /keys/changes` answer from here.
 *
 * A user U "shares a room" with X when U is joined to a room X is joined or invited to: clients
 * encrypt for invited members too (unless history is only visible to joined members), so they
 * must hear about an invitee's new devices. Then, as Synapse does:
 * - changed: (a) users sharing a room with U at upTo whose device lists changed in the window,
 *   and U itself when U's own did; (b) users who became joined or invited during the window in
 *   a room U is joined to; (c) everyone sharing a room U joined during the window (their
 *   devices are new to U);
 * - left: users who shared a room with U at `since` (per the window's membership changes: they
 *   left, or U left the room) but share none at upTo. Never U, never also in `changed`.
 *
 * Memberships at `since` and at `upTo` are reconstructed exactly from current membership and
 * the member changes committed after `since` (a change's `prev` is the membership before it),
 * so commits landing after the barrier change nothing in this window's answer.
 */
import { invalidParam } from "../errors.ts";
import type {
  DeviceListChangeReader,
  MemberTransition,
  StampedMembership,
} from "../ports/device_list_reader.ts";
import { checkSyncToken, isAfter } from "../sync/sync_token.ts";

/** A window's device-list answer, both sorted. */
export interface DeviceListChanges {
  changed: string[];
  left: string[];
}

/** Memberships of the other user that let U see them in a room U is joined to. */
const SHARING = new Set(["join", "invite"]);

/**
 * Member-change commits listed server-wide after `since`; past this many (a long catch-up), each
 * of U's rooms is checked by its marker instead.
 */
const MAX_LISTED_COMMITS = 256;

/** Member lists read at once (new or left rooms, or many candidates). */
const MEMBER_READS_IN_FLIGHT = 8;

/**
 * Entries of the server-wide device-list change index read for one window at most. Past this (a
 * catch-up after a long absence on a busy server, or a /keys/changes from an old token) the
 * window is answered from the logs of the users sharing a room with the syncer instead, so the
 * cost follows the syncer's rooms, not every device change on the server.
 */
export const MAX_LISTED_DEVICE_CHANGES = 1000;

/** Tuning of the service. */
export interface DeviceListServiceOptions {
  /** See MAX_LISTED_DEVICE_CHANGES. */
  maxListedDeviceChanges?: number;
}

/** Computes `device_lists` for a sync window. */
export class DeviceListService {
  readonly #maxListedDeviceChanges: number;

  /** Over the device-list and membership reads. */
  constructor(
    private readonly reader: DeviceListChangeReader,
    options: DeviceListServiceOptions = {},
  ) {
    this.#maxListedDeviceChanges = options.maxListedDeviceChanges ?? MAX_LISTED_DEVICE_CHANGES;
  }

  /**
   * `GET /keys/changes?from&to`: both must be sync tokens (400 M_INVALID_PARAM otherwise);
   * `to` before `from` is an empty window.
   */
  async keyChanges(userId: string, from: string, to: string): Promise<DeviceListChanges> {
    for (const token of [from, to]) {
      try {
        checkSyncToken(token);
      } catch {
        throw invalidParam(`Invalid token: ${token.slice(0, 64)}`);
      }
    }
    return await this.changesBetween(userId, from, to);
  }

  /** The device-list changes U should hear of in (since, upTo]; both tokens well formed. */
  async changesBetween(userId: string, since: string, upTo: string): Promise<DeviceListChanges> {
    if (upTo <= since) return { changed: [], left: [] };
    const window = { since, upTo };
    const [listed, recent] = await Promise.all([
      this.reader.deviceListChanges(since, upTo, this.#maxListedDeviceChanges),
      this.reader.memberChangeCommitsAfter(since, MAX_LISTED_COMMITS),
    ]);
    // Most windows (a long-poll woken by a message) hold neither: two short lists answer them.
    const memberChangesInWindow = recent === null ||
      recent.some((c) => !isAfter(c.versionstamp, upTo));
    if (listed?.size === 0 && !memberChangesInWindow) return { changed: [], left: [] };
    const own = await this.reader.membershipsOf(userId);
    // Rooms U can have been joined to at either end: joined now, or U's membership was
    // rewritten after `since` (a membership untouched since then is what it was at both ends).
    const candidates = own.filter((m) => m.membership === "join" || isAfter(m.versionstamp, since));
    // Member changes after upTo are read too: they say what memberships were at upTo.
    const moved = recent === null ? undefined : new Set(recent.map((c) => c.roomId));
    const transitions = await this.reader.memberTransitionsAfter(
      candidates.map((m) => m.roomId).filter((roomId) => moved?.has(roomId) ?? true),
      since,
    );

    const joinedAtUpTo: string[] = [];
    const newlyJoined: string[] = [];
    const newlyLeft: string[] = [];
    /** Joined at both ends (maybe with a gap): who moved in the window matters there. */
    const joinedBoth: string[] = [];
    for (const m of candidates) {
      const mine = byUser(transitions.get(m.roomId)).get(userId) ?? [];
      const before = membershipAt(m.membership, mine, since);
      const after = membershipAt(m.membership, mine, upTo);
      // Left and joined again inside the window: devices may have changed unseen meanwhile.
      const rejoined = mine.some((t) => inWindow(t, window) && t.membership === "join");
      if (after === "join") {
        joinedAtUpTo.push(m.roomId);
        if (before !== "join" || rejoined) newlyJoined.push(m.roomId);
        if (before === "join") joinedBoth.push(m.roomId);
      } else if (before === "join") {
        newlyLeft.push(m.roomId);
      }
    }

    const changed = new Set<string>();
    const leftCandidates = new Set<string>();
    const sharing = new Set<string>();
    // (b) and departures in rooms U stayed in: only the members who moved in the window.
    for (const roomId of joinedBoth) {
      for (const [member, list] of byUser(transitions.get(roomId))) {
        if (member === userId) continue;
        const after = membershipAt(null, list, upTo);
        const before = membershipAt(null, list, since);
        if (SHARING.has(after ?? "")) {
          sharing.add(member);
          const arrived = list.some((t) => inWindow(t, window) && SHARING.has(t.membership ?? ""));
          if (arrived) changed.add(member);
        } else if (SHARING.has(before ?? "")) {
          leftCandidates.add(member);
        }
      }
    }
    // (c) everyone in rooms U joined; and everyone who was in the rooms U left.
    const edgeRooms = [
      ...newlyJoined.map((roomId) => ({ roomId, at: upTo, joined: true })),
      ...newlyLeft.map((roomId) => ({ roomId, at: since, joined: false })),
    ];
    await inBatches(edgeRooms, async ({ roomId, at, joined }) => {
      const members = membersAt(await this.reader.membersOf(roomId), transitions.get(roomId), at);
      for (const member of members) {
        if (member === userId) continue;
        if (joined) {
          changed.add(member);
          sharing.add(member);
        } else {
          leftCandidates.add(member);
        }
      }
    });

    let devicesChanged = listed;
    if (devicesChanged === null) {
      // Too many changes server-wide to list: everyone sharing a room with U at upTo shares it
      // (that is the audience), and only their own logs are read.
      const audience = await this.#membersAt(joinedAtUpTo, transitions, upTo);
      audience.delete(userId);
      for (const id of audience) sharing.add(id);
      devicesChanged = await this.reader.deviceListChangesOf([userId, ...audience], since, upTo);
    }
    // (a) device changes, and the left candidates, need "shares a room with U at upTo".
    if (devicesChanged.has(userId)) changed.add(userId);
    const unknown = new Set<string>();
    for (const id of [...devicesChanged, ...leftCandidates]) {
      if (id !== userId && !sharing.has(id)) unknown.add(id);
    }
    for (const id of await this.#sharingAt(unknown, joinedAtUpTo, transitions, upTo)) {
      sharing.add(id);
    }
    for (const id of devicesChanged) if (id !== userId && sharing.has(id)) changed.add(id);
    const left = [...leftCandidates].filter((id) =>
      id !== userId && !sharing.has(id) && !changed.has(id)
    );
    return { changed: [...changed].sort(), left: left.sort() };
  }

  /** Everyone joined or invited at `upTo` to one of `roomIds`. */
  async #membersAt(
    roomIds: readonly string[],
    transitions: ReadonlyMap<string, MemberTransition[]>,
    upTo: string,
  ): Promise<Set<string>> {
    const members = new Set<string>();
    await inBatches(roomIds, async (roomId) => {
      const now = await this.reader.membersOf(roomId);
      for (const id of membersAt(now, transitions.get(roomId), upTo)) members.add(id);
    });
    return members;
  }

  /**
   * Those of `userIds` joined or invited at `upTo` to one of `roomIds` (U's joined rooms then):
   * through each user's rooms when there are fewer users than rooms, else through each room's
   * members.
   */
  async #sharingAt(
    userIds: ReadonlySet<string>,
    roomIds: readonly string[],
    transitions: ReadonlyMap<string, MemberTransition[]>,
    upTo: string,
  ): Promise<Set<string>> {
    const found = new Set<string>();
    if (userIds.size === 0 || roomIds.length === 0) return found;
    const rooms = new Set(roomIds);
    const moved = new Map([...transitions].map(([roomId, list]) => [roomId, byUser(list)]));
    const sharesIn = (m: StampedMembership) => {
      const mine = moved.get(m.roomId)?.get(m.userId) ?? [];
      return SHARING.has(membershipAt(m.membership, mine, upTo) ?? "");
    };
    if (userIds.size <= rooms.size) {
      await inBatches([...userIds], async (id) => {
        const memberships = await this.reader.membershipsOf(id);
        if (memberships.some((m) => rooms.has(m.roomId) && sharesIn(m))) found.add(id);
      });
      // A user removed from current state after upTo has no membership entry left to find.
      for (const [roomId, byMember] of moved) {
        if (!rooms.has(roomId)) continue;
        for (const [id, mine] of byMember) {
          if (userIds.has(id) && SHARING.has(membershipAt(null, mine, upTo) ?? "")) found.add(id);
        }
      }
      return found;
    }
    await inBatches([...rooms], async (roomId) => {
      const members = membersAt(await this.reader.membersOf(roomId), transitions.get(roomId), upTo);
      for (const id of members) if (userIds.has(id)) found.add(id);
    });
    return found;
  }
}

/** A room's transitions grouped by user, each list newest first like its source. */
function byUser(list: readonly MemberTransition[] | undefined): Map<string, MemberTransition[]> {
  const out = new Map<string, MemberTransition[]>();
  for (const t of list ?? []) {
    const mine = out.get(t.userId);
    if (mine) mine.push(t);
    else out.set(t.userId, [t]);
  }
  return out;
}

/**
 * A user's membership at `token`, from their membership now and their transitions after some
 * earlier token (newest first): the state before the oldest transition after `token`, else
 * the newest transition's result, else `current`.
 */
function membershipAt(
  current: string | null,
  transitions: readonly MemberTransition[],
  token: string,
): string | null {
  let at: string | null = transitions.length > 0 ? transitions[0].membership : current;
  for (const t of transitions) {
    if (!isAfter(t.versionstamp, token)) break;
    at = t.prev;
  }
  return at;
}

/** Users joined or invited to a room at `token`, from its members now and later transitions. */
function membersAt(
  members: readonly StampedMembership[],
  transitions: readonly MemberTransition[] | undefined,
  token: string,
): string[] {
  const moved = byUser(transitions);
  const out: string[] = [];
  for (const m of members) {
    if (!moved.has(m.userId) && SHARING.has(m.membership)) out.push(m.userId);
  }
  for (const [id, list] of moved) {
    if (SHARING.has(membershipAt(null, list, token) ?? "")) out.push(id);
  }
  return out;
}

function inWindow(t: MemberTransition, window: { since: string; upTo: string }): boolean {
  return isAfter(t.versionstamp, window.since) && !isAfter(t.versionstamp, window.upTo);
}

async function inBatches<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += MEMBER_READS_IN_FLIGHT) {
    await Promise.all(items.slice(i, i + MEMBER_READS_IN_FLIGHT).map(work));
  }
}
