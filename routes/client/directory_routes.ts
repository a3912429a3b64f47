/**
 * The room directory: aliases (`/directory/room/{roomAlias}`, `/rooms/{roomId}/aliases`), the
 * published room list (`/publicRooms`) and each room's listing (`/directory/list/room/{roomId}`).
 */
import { Hono, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { publicRoomsBody } from "../public_rooms_body.ts";
import { forbidden } from "../../domain/errors.ts";
import { RoomState } from "../../domain/rooms/room_state.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { roomAliasParam, roomIdParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { isValidRoomId, isValidServerName } from "../../domain/protocol/identifiers.ts";

const aliasBody = z.object({
  room_id: z.string().max(255).refine(isValidRoomId, "must be a valid room ID"),
});
const visibilityBody = z.object({ visibility: z.enum(["public", "private"]) });
const limit = wholeNumberQuery().pipe(z.number().max(1000));
const publicRoomsQuery = z.object({
  limit: limit.optional(),
  since: z.string().max(64).optional(),
  server: z.string().max(255).refine(isValidServerName, "must be a server name").optional(),
});

/** The directory area (v3 and r0). */
export function directoryArea(deps: AppDeps): ClientArea {
  const app = new Hono<ClientEnv>();
  const { aliases, publicRooms } = deps.rooms;
  const auth = requireSession(deps.sessions);
  /** The server whose list is asked for, when it is not this one. */
  const remote = (server: string | undefined) =>
    server !== undefined && server !== deps.config.serverName ? server : undefined;

  app.get("/directory/room/:roomAlias", async (c) => {
    const alias = roomAliasParam(c);
    if (!alias.endsWith(`:${deps.config.serverName}`)) {
      const found = await deps.remoteJoiner.resolveAlias(alias);
      return c.json({ room_id: found.roomId, servers: found.servers });
    }
    const record = await aliases.resolve(alias);
    return c.json({ room_id: record.roomId, servers: [deps.config.serverName] });
  });

  app.put("/directory/room/:roomAlias", auth, rateLimited(deps, "directory"), async (c) => {
    const alias = roomAliasParam(c);
    const body = await readJsonBody(c, aliasBody);
    await aliases.create(c.get("session").userId, alias, body.room_id);
    return c.json({});
  });

  app.delete("/directory/room/:roomAlias", auth, rateLimited(deps, "directory"), async (c) => {
    await aliases.delete(c.get("session").userId, roomAliasParam(c));
    return c.json({});
  });

  app.get("/rooms/:roomId/aliases", auth, async (c) => {
    const roomId = roomIdParam(c);
    const state = await RoomState.open(deps.eventStore, roomId);
    const member = (await state.membership(c.get("session").userId)) === "join";
    const history = (await state.content("m.room.history_visibility"))?.history_visibility;
    if (!member && history !== "world_readable") throw forbidden("You are not in this room");
    return c.json({ aliases: await aliases.list(roomId) });
  });

  app.get("/directory/list/room/:roomId", async (c) => {
    return c.json({ visibility: await publicRooms.visibility(roomIdParam(c)) });
  });

  app.put("/directory/list/room/:roomId", auth, rateLimited(deps, "directory"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, visibilityBody);
    await publicRooms.setVisibility(c.get("session").userId, roomId, body.visibility);
    return c.json({});
  });

  // Anyone may read our own list; asking another server costs us a request, so only users may.
  const authForRemote: MiddlewareHandler = (c, next) =>
    remote(c.req.query("server")) !== undefined ? auth(c, next) : next();
  app.get("/publicRooms", authForRemote, async (c) => {
    const query = readQuery(c, publicRoomsQuery);
    const server = remote(query.server);
    if (server !== undefined) {
      return c.json(
        await deps.remoteQueries.publicRooms(server, { limit: query.limit, since: query.since }),
      );
    }
    return c.json(await publicRooms.list({ limit: query.limit, since: query.since }));
  });

  app.post("/publicRooms", auth, async (c) => {
    const query = readQuery(c, publicRoomsQuery);
    const body = await readJsonBody(c, publicRoomsBody, { emptyAsObject: true });
    const server = remote(query.server);
    if (server !== undefined) {
      return c.json(
        await deps.remoteQueries.publicRooms(server, {
          limit: body.limit ?? undefined,
          since: body.since ?? undefined,
          searchTerm: body.filter?.generic_search_term ?? undefined,
          roomTypes: body.filter?.room_types,
          includeAllNetworks: body.include_all_networks ?? undefined,
          thirdPartyInstanceId: body.third_party_instance_id ?? undefined,
        }),
      );
    }
    return c.json(
      await publicRooms.list({
        limit: body.limit ?? undefined,
        since: body.since ?? undefined,
        searchTerm: body.filter?.generic_search_term ?? undefined,
        roomTypes: body.filter?.room_types,
      }),
    );
  });

  return { v3: app as unknown as Hono };
}
