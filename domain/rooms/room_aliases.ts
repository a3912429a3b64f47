/**
 * Room aliases: resolving `#alias:server` to a room, creating and deleting local aliases, and
 * keeping `m.room.canonical_alias` honest: it may only name aliases of its room, and an alias
 * that goes away is dropped from it by the user who deleted it, when they may.
 */
import { forbidden, invalidParam, MatrixError, notFound } from "../errors.ts";
import { parseRoomAlias, requireValid } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
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

  /**
   * Check the content of a client's `m.room.canonical_alias` for `roomId` (spec: PUT state,
   * 400 M_INVALID_PARAM for bad syntax, M_BAD_ALIAS for an alias not pointing at the room). As
   * Synapse, only aliases the current event does not already name must resolve to the room, so
   * a stale entry does not block editing the rest; remote aliases cannot be resolved without
   * federation, so they cannot be added yet.
   */
  async checkCanonicalAlias(roomId: string, content: JsonObject): Promise<void> {
    const { alias, alt_aliases: alt } = content;
    if (alias !== undefined) requireAliasSyntax(alias, "alias");
    if (alt !== undefined) {
      if (!Array.isArray(alt)) throw invalidParam("alt_aliases must be a list of room aliases");
      alt.forEach((a, i) => requireAliasSyntax(a, `alt_aliases[${i}]`));
    }
    const previous = await RoomState.open(this.deps.store, roomId)
      .then((state) => state.content("m.room.canonical_alias"))
      .catch(() => undefined);
    const known = new Set<unknown>([
      previous?.alias,
      ...(Array.isArray(previous?.alt_aliases) ? previous.alt_aliases : []),
    ]);
    const added = [alias, ...(Array.isArray(alt) ? alt : [])]
      .filter((a): a is string => typeof a === "string" && !known.has(a));
    for (const a of new Set(added)) {
      const record = await this.deps.directory.resolveAlias(a);
      if (record?.roomId !== roomId) {
        throw new MatrixError("M_BAD_ALIAS", 400, `Room alias ${a} does not point to this room`);
      }
    }
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
   * Remove aliases from the room's canonical alias event (as `alias` or in `alt_aliases`), sent
   * by the user who deleted them: an event's sender is who acted. When they may not change the
   * canonical alias, it stays as it is (as Synapse, which logs the refusal and moves on): the
   * alias itself is gone either way, and clients that follow a dangling alias get a 404.
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
    if ((await state.membership(userId)) !== "join") return;
    if (!(await state.maySendState(userId, "m.room.canonical_alias"))) return;
    await this.deps.sender.send({
      roomId: state.roomId,
      sender: userId,
      type: "m.room.canonical_alias",
      stateKey: "",
      content: next,
    }).catch((error) => {
      // Power changed since the check above: the same outcome as having no power.
      if (!(error instanceof MatrixError && error.status === 403)) throw error;
    });
  }
}

/** 400 M_INVALID_PARAM unless `value` is a well-formed room alias. */
function requireAliasSyntax(value: unknown, field: string): void {
  const parsed = typeof value === "string" ? parseRoomAlias(value) : undefined;
  if (!parsed?.ok) {
    throw invalidParam(`${field} must be a room alias, not ${JSON.stringify(value)}`);
  }
}
