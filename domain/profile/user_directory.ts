/**
 * User directory search, Synapse's default scope: local users who share a room with the
 * searcher, or who are joined to a public room (one anyone may join or read: join rule
 * `public` or history visibility `world_readable`, as Synapse counts it) that is listed in the
 * room directory. The searcher finds themself only through a public room. Matched on user ID and
 * display name.
 */
import { stateKey } from "../protocol/events.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { MemberProfile } from "./profile_service.ts";

/** One search result, as the spec shapes it. */
export interface DirectoryUser {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

/** What the search is built from. */
export interface UserDirectoryDeps {
  events: Pick<EventReader, "roomsOfUser" | "members" | "currentStateEventIds" | "getEvents">;
  profiles: { profiles(userIds: readonly string[]): Promise<Map<string, MemberProfile>> };
  /** Rooms listed in the room directory; their members are found while the room is public. */
  publishedRoomIds?: () => Promise<readonly string[]>;
  serverName: string;
}

/** Most rooms whose members one search reads; bounds a search's cost for busy users. */
const MAX_ROOMS_SCANNED = 500;
const JOIN_RULES = stateKey("m.room.join_rules", "");
const HISTORY_VISIBILITY = stateKey("m.room.history_visibility", "");

/** Whether anyone may join or read the room now. */
export async function isPublicRoom(
  events: Pick<EventReader, "currentStateEventIds" | "getEvents">,
  roomId: string,
): Promise<boolean> {
  const ids = await events.currentStateEventIds(roomId, [JOIN_RULES, HISTORY_VISIBILITY]);
  const found = await events.getEvents([...ids.values()]);
  const content = (key: typeof JOIN_RULES) => {
    const id = ids.get(key);
    return id === undefined ? undefined : found.get(id)?.pdu.content;
  };
  return content(JOIN_RULES)?.join_rule === "public" ||
    content(HISTORY_VISIBILITY)?.history_visibility === "world_readable";
}

/** Search the directory as `searcher`. */
export async function searchUserDirectory(
  deps: UserDirectoryDeps,
  searcher: string,
  term: string,
  limit: number,
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const joined = (await deps.events.roomsOfUser(searcher, ["join"])).map((m) => m.roomId)
    .slice(0, MAX_ROOMS_SCANNED);
  const joinedSet = new Set(joined);
  const published = ((await deps.publishedRoomIds?.()) ?? []).filter((r) => !joinedSet.has(r))
    .slice(0, Math.max(0, MAX_ROOMS_SCANNED - joined.length));
  const publicPublished = (await Promise.all(
    published.map(async (r) => (await isPublicRoom(deps.events, r)) ? r : undefined),
  )).filter((r): r is string => r !== undefined);
  const userIds = new Set<string>();
  const suffix = `:${deps.serverName}`;
  const roomIds = [...joined, ...publicPublished];
  const memberLists = await Promise.all(roomIds.map((r) => deps.events.members(r, ["join"])));
  for (const members of memberLists) {
    for (const m of members) if (m.userId.endsWith(suffix)) userIds.add(m.userId);
  }
  // The searcher shares every joined room with themself: only a public one lists them.
  if (userIds.has(searcher) && !(await anyPublic(deps, joined))) userIds.delete(searcher);
  const candidates = [...userIds];
  const profiles = await deps.profiles.profiles(candidates);
  const words = term.toLowerCase().split(/\s+/).filter((w) => w !== "");
  const matches: DirectoryUser[] = [];
  for (const userId of candidates) {
    const profile = profiles.get(userId) ?? {};
    const haystack = `${userId} ${profile.displayname ?? ""}`.toLowerCase();
    if (!words.every((w) => haystack.includes(w))) continue;
    const user: DirectoryUser = { user_id: userId };
    if (profile.displayname !== undefined) user.display_name = profile.displayname;
    if (profile.avatar_url !== undefined) user.avatar_url = profile.avatar_url;
    matches.push(user);
  }
  // Users with a profile first, then by display name or ID, as the spec suggests.
  matches.sort((a, b) =>
    Number(b.display_name !== undefined) - Number(a.display_name !== undefined) ||
    (a.display_name ?? a.user_id).localeCompare(b.display_name ?? b.user_id)
  );
  return { results: matches.slice(0, limit), limited: matches.length > limit };
}

/** Whether any of `roomIds` is public, reading the rooms a few at a time until one is. */
async function anyPublic(deps: UserDirectoryDeps, roomIds: readonly string[]): Promise<boolean> {
  for (let i = 0; i < roomIds.length; i += 10) {
    const batch = roomIds.slice(i, i + 10);
    const found = await Promise.all(batch.map((r) => isPublicRoom(deps.events, r)));
    if (found.includes(true)) return true;
  }
  return false;
}
