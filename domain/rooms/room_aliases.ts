/**
 * Room aliases: resolving `#alias:server` to a room, creating and deleting local aliases, and
 * keeping `m.room.canonical_alias` honest when an alias it names goes away.
 */
import { forbidden, MatrixError, notFound } from "../errors.ts";
import { parseRoomAlias, requireValid } from "../identifiers.ts";
import type { JsonObject } from "../json.ts";
import type { AliasRecord } from "../ports/room_directory_store.ts";
import { RoomState } from "./room_state.ts";
import { isLocal, remoteRoomUnsupported, type RoomServiceDeps } from "./room_services.ts";

/** Local alias management over the room directory store. */
export class RoomAliases {
  constructor(private readonly deps: RoomServiceDeps) {}

  /** The room an alias points at; M_NOT_FOUND when unknown (remote aliases need federation). */
  async resolve(alias: string): Promise<AliasRecord> {
    requireValid(parseRoomAlias(alias));
    const record = await this.deps.directory.resolveAlias(alias);
    if (record) return record;
    if (!isLocal(alias, this.deps.serverName)) throw remoteRoomUnsupported(`Room alias ${alias}`);
    throw notFound(`Room alias ${alias} not found`);
  }

  /** A room ID as is, or the room an alias points at. */
  async roomIdOf(roomIdOrAlias: string): Promise<string> {
    if (roomIdOrAlias.startsWith("#")) return (await this.resolve(roomIdOrAlias)).roomId;
    return roomIdOrAlias;
  }

  /** Map a new local alias to a room the user is joined to; 409 when the alias is taken. */
  async create(userId: string, alias: string, roomId: string): Promise<void> {
    this.requireLocalAlias(alias);
    const state = await RoomState.open(this.deps.store, roomId);
    if ((await state.membership(userId)) !== "join") {
      throw forbidden("You must be joined to the room to give it an alias");
    }
    const created = await this.deps.directory.createAlias({ alias, roomId, creator: userId });
    if (!created) throw new MatrixError("M_UNKNOWN", 409, `Room alias ${alias} already exists`);
  }

  /**
   * Delete a local alias: allowed for its creator and for anyone who may change the room's
   * canonical alias. A canonical alias event naming it is updated so clients stop showing it.
   */
  async delete(userId: string, alias: string): Promise<void> {
    this.requireLocalAlias(alias);
    const record = await this.deps.directory.resolveAlias(alias);
    if (!record) throw notFound(`Room alias ${alias} not found`);
    const state = await RoomState.open(this.deps.store, record.roomId).catch(() => null);
    if (record.creator !== userId) {
      const allowed = state !== null &&
        (await state.membership(userId)) === "join" &&
        (await state.maySendState(userId, "m.room.canonical_alias"));
      if (!allowed) throw forbidden("You may not delete this alias");
    }
    if (!(await this.deps.directory.deleteAlias(alias))) {
      throw notFound(`Room alias ${alias} not found`);
    }
    if (state) await this.#dropFromCanonicalAlias(state, userId, [alias]);
  }

  /** The local aliases of a room. */
  list(roomId: string): Promise<string[]> {
    return this.deps.directory.aliasesOfRoom(roomId);
  }

  /** Check an alias is well-formed and ours; aliases on other servers cannot be managed here. */
  requireLocalAlias(alias: string): void {
    requireValid(parseRoomAlias(alias));
    if (!isLocal(alias, this.deps.serverName)) {
      throw new MatrixError("M_INVALID_PARAM", 400, `Room alias ${alias} is not on this server`);
    }
  }

  /**
   * Remove aliases from the room's canonical alias event (as `alias` or in `alt_aliases`). The
   * sender, else any joined local user who may, sends the update; when nobody may, it stays.
   */
  async #dropFromCanonicalAlias(state: RoomState, userId: string, gone: string[]): Promise<void> {
    const content = await state.content("m.room.canonical_alias");
    if (!content) return;
    const alt = Array.isArray(content.alt_aliases) ? content.alt_aliases : [];
    const touched = gone.includes(content.alias as string) ||
      alt.some((a) => gone.includes(a as string));
    if (!touched) return;
    const next: JsonObject = { ...content };
    if (gone.includes(content.alias as string)) delete next.alias;
    if (Array.isArray(content.alt_aliases)) {
      next.alt_aliases = alt.filter((a) => !gone.includes(a as string));
    }
    const candidates = [userId, ...await this.#localJoinedUsers(state.roomId)];
    for (const candidate of new Set(candidates)) {
      if ((await state.membership(candidate)) !== "join") continue;
      if (!(await state.maySendState(candidate, "m.room.canonical_alias"))) continue;
      await this.deps.sender.send({
        roomId: state.roomId,
        sender: candidate,
        type: "m.room.canonical_alias",
        stateKey: "",
        content: next,
      });
      return;
    }
  }

  async #localJoinedUsers(roomId: string): Promise<string[]> {
    const members = await this.deps.store.members(roomId, ["join"]);
    return members.map((m) => m.userId).filter((u) => isLocal(u, this.deps.serverName));
  }
}
