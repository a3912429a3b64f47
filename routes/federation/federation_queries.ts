/**
 * Queries and directories for other servers (under `/_matrix/federation/v1`):
 * `GET /query/directory?room_alias=`, `GET /query/profile?user_id=&field=`,
 * `GET` and `POST /publicRooms` and `GET /hierarchy/{roomId}?suggested_only=`. Every route
 * verifies the X-Matrix signature (`serverAuth`) and validates its input before any read; the
 * answers come from the domain services the Client-Server API uses (aliases, profiles, the
 * published room directory, spaces).
 */
import { Hono } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { publicRoomsBody } from "../public_rooms_body.ts";
import { ServerQueries } from "../../domain/federation/server_queries.ts";
import { RoomServerAcl } from "../../domain/federation/server_acl.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import { roomIdParam } from "../client/path_params.ts";
import { MAX_FEDERATION_BODY_BYTES, originOf, serverAuth } from "./server_auth.ts";

const directoryQuery = z.object({ room_alias: z.string().min(1).max(255) });
const profileQuery = z.object({
  user_id: z.string().min(1).max(255),
  field: z.string().min(1).max(255).optional(),
});
const limit = wholeNumberQuery().pipe(z.number().max(1000));
const publicRoomsQuery = z.object({
  limit: limit.optional(),
  since: z.string().max(64).optional(),
  include_all_networks: z.enum(["true", "false"]).optional(),
  third_party_instance_id: z.string().max(255).optional(),
});
const hierarchyQuery = z.object({
  suggested_only: z.enum(["true", "false"]).optional(),
});

/** The query and directory routes, signature-checked. */
export function federationQueriesApp(deps: AppDeps): Hono {
  const app = new Hono();
  const queries = new ServerQueries({
    serverName: deps.config.serverName,
    store: deps.eventStore,
    aliases: deps.rooms.aliases,
    profiles: deps.profiles,
  });
  const acl = new RoomServerAcl(deps.eventStore);
  const auth = serverAuth(deps);
  const v1 = "/_matrix/federation/v1";

  app.get(`${v1}/query/directory`, auth, async (c) => {
    const query = readQuery(c, directoryQuery);
    return c.json(await queries.directory(query.room_alias));
  });

  app.get(`${v1}/query/profile`, auth, async (c) => {
    const query = readQuery(c, profileQuery);
    return c.json(await queries.profile(query.user_id, query.field));
  });

  app.get(`${v1}/publicRooms`, auth, async (c) => {
    const query = readQuery(c, publicRoomsQuery);
    return c.json(await deps.rooms.publicRooms.list({ limit: query.limit, since: query.since }));
  });

  app.post(`${v1}/publicRooms`, auth, async (c) => {
    const body = await readJsonBody(c, publicRoomsBody, {
      emptyAsObject: true,
      maxBytes: MAX_FEDERATION_BODY_BYTES,
    });
    return c.json(
      await deps.rooms.publicRooms.list({
        limit: body.limit ?? undefined,
        since: body.since ?? undefined,
        searchTerm: body.filter?.generic_search_term ?? undefined,
        roomTypes: body.filter?.room_types,
      }),
    );
  });

  app.get(`${v1}/hierarchy/:roomId`, auth, async (c) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, hierarchyQuery);
    const origin = originOf(c);
    // A server the room's ACL denies takes no part in it, previews included.
    await acl.assertAllowed(roomId, origin);
    return c.json(
      await deps.spaces.serverHierarchy(origin, roomId, query.suggested_only === "true"),
    );
  });

  return app;
}
