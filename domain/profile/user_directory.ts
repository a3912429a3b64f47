/**
 * User directory search, Synapse's default scope: local users who share a room with the
 * searcher or are joined to a public room, matched on user ID and display name.
 */
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
  events: Pick<EventReader, "roomsOfUser" | "members">;
  profiles: { profiles(userIds: readonly string[]): Promise<Map<string, MemberProfile>> };
  /** Rooms anyone may join (public join rule or published); optional until rooms provide it. */
  publicRoomIds?: () => Promise<readonly string[]>;
  serverName: string;
}

/** Most rooms whose members one search reads; bounds a search's cost for busy users. */
const MAX_ROOMS_SCANNED = 500;

/** Search the directory as `searcher`. */
export async function searchUserDirectory(
  deps: UserDirectoryDeps,
  searcher: string,
  term: string,
  limit: number,
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const joined = await deps.events.roomsOfUser(searcher, ["join"]);
  const publicRooms = (await deps.publicRoomIds?.()) ?? [];
  const roomIds = [...new Set([...joined.map((m) => m.roomId), ...publicRooms])]
    .slice(0, MAX_ROOMS_SCANNED);
  const userIds = new Set<string>();
  const suffix = `:${deps.serverName}`;
  for (const members of await Promise.all(roomIds.map((r) => deps.events.members(r, ["join"])))) {
    for (const m of members) if (m.userId.endsWith(suffix)) userIds.add(m.userId);
  }
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
