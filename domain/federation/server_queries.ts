/**
 * Queries other servers make that are not room reads: `/query/directory` (a local alias to its
 * room and resident servers), `/query/profile` (a local user's public profile) and the public
 * room list. Each answers from the same domain services the Client-Server API uses.
 */
import { invalidParam, notFound } from "../errors.ts";
import { parseRoomAlias, parseUserId } from "../protocol/identifiers.ts";
import type { JsonObject, JsonValue } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { ProfileService } from "../profile/profile_service.ts";
import type { RoomAliases } from "../rooms/room_aliases.ts";

/** What the queries read. */
export interface ServerQueriesDeps {
  serverName: string;
  store: Pick<EventReader, "serversInRoom">;
  aliases: Pick<RoomAliases, "resolve">;
  profiles: Pick<ProfileService, "fullProfile">;
}

/** Profile fields a server may read: every field a user set is public (as Synapse serves). */
export class ServerQueries {
  /** Over the alias directory, the room servers projection and the profile store. */
  constructor(private readonly deps: ServerQueriesDeps) {}

  /**
   * `/query/directory?room_alias=`: the room of a local alias and the servers with a user joined
   * to it, this one first. M_NOT_FOUND for an alias that is not ours or not known.
   */
  async directory(alias: string): Promise<{ room_id: string; servers: string[] }> {
    const parsed = parseRoomAlias(alias);
    if (!parsed.ok) throw invalidParam(parsed.reason);
    if (parsed.value.serverName !== this.deps.serverName) {
      throw notFound(`Room alias ${alias} is not hosted on this server`);
    }
    const { roomId } = await this.deps.aliases.resolve(alias);
    // The room servers projection: one entry per server, not a listing of every member.
    const servers = new Set([this.deps.serverName]);
    for (const server of (await this.deps.store.serversInRoom(roomId)).keys()) {
      servers.add(server);
    }
    return { room_id: roomId, servers: [...servers] };
  }

  /**
   * `/query/profile?user_id=&field=`: a local user's profile, or one field of it. M_NOT_FOUND
   * when the user has no profile or not that field; M_INVALID_PARAM for a user not of ours.
   */
  async profile(userId: string, field?: string): Promise<JsonObject> {
    const parsed = parseUserId(userId);
    if (!parsed.ok) throw invalidParam(parsed.reason);
    if (parsed.value.serverName !== this.deps.serverName) {
      throw invalidParam(`User ${userId} is not hosted on this server`);
    }
    const fields = await this.deps.profiles.fullProfile(userId);
    if (field === undefined) return { ...fields };
    if (!Object.hasOwn(fields, field)) throw notFound(`Profile field '${field}' not found`);
    return { [field]: fields[field] as JsonValue };
  }
}
