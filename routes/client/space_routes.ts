/**
 * Spaces and previews (domain/spaces/space_service.ts): `GET /v1/rooms/{roomId}/hierarchy`,
 * `GET /v1/room_summary/{roomIdOrAlias}` and `GET /v1/mutual_rooms`, and the unstable paths
 * Synapse serves them under (MSC2946, MSC3266, MSC2666).
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { MatrixError } from "../../domain/errors.ts";
import { parseUserId, requireValid } from "../../domain/protocol/identifiers.ts";
import type { AppDeps } from "../deps.ts";
import { readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { roomIdOrAliasParam, roomIdParam } from "./path_params.ts";
import { accessTokenOf, type ClientEnv, requireSession } from "./session_middleware.ts";

const booleanParam = z.enum(["true", "false"]).transform((v) => v === "true").optional();
const countParam = (min: number) =>
  wholeNumberQuery().refine((n) => n >= min, `must be at least ${min}`).optional();

const hierarchyQuery = z.object({
  suggested_only: booleanParam,
  max_depth: countParam(0),
  limit: countParam(1),
  from: z.string().max(1024).optional(),
});

const mutualRoomsQuery = z.object({
  user_id: z.string().max(255),
  from: z.string().max(255).optional(),
});

/** The spaces area. */
export function spaceArea(deps: AppDeps): ClientArea {
  const auth = requireSession(deps.sessions);
  const { spaces } = deps;

  const hierarchy = async (c: Context<ClientEnv>) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, hierarchyQuery);
    return c.json(
      await spaces.hierarchy(c.get("session").userId, roomId, {
        suggestedOnly: query.suggested_only ?? false,
        maxDepth: query.max_depth,
        limit: query.limit,
        from: query.from,
      }),
    );
  };

  // Callers may be anonymous (the spec allows it for public and world-readable rooms); a token
  // that is sent must be valid.
  const summary = async (c: Context) => {
    const target = roomIdOrAliasParam(c);
    const token = accessTokenOf(c);
    let userId: string | null = null;
    if (token !== undefined) {
      const session = await deps.sessions.resolveAccessToken(token);
      if (!session) {
        throw new MatrixError("M_UNKNOWN_TOKEN", 401, "Unknown access token", {
          soft_logout: false,
        });
      }
      userId = session.userId;
    }
    let roomId: string;
    try {
      roomId = await deps.rooms.aliases.roomIdOf(target);
    } catch (error) {
      // A remote alias needs federation: for this endpoint the room is simply not found.
      if (error instanceof MatrixError && error.status !== 400) {
        throw new MatrixError("M_NOT_FOUND", 404, "Room not found");
      }
      throw error;
    }
    return c.json(await spaces.summary(userId, roomId));
  };

  const mutualRooms = async (c: Context<ClientEnv>) => {
    const query = readQuery(c, mutualRoomsQuery);
    requireValid(parseUserId(query.user_id));
    return c.json(await spaces.mutualRooms(c.get("session").userId, query.user_id, query.from));
  };

  const v1 = new Hono<ClientEnv>();
  v1.get("/rooms/:roomId/hierarchy", auth, hierarchy);
  v1.get("/room_summary/:roomIdOrAlias", summary);
  v1.get("/mutual_rooms", auth, mutualRooms);

  const unstable = new Hono<ClientEnv>();
  unstable.get("/org.matrix.msc2946/rooms/:roomId/hierarchy", auth, hierarchy);
  unstable.get("/im.nheko.summary/summary/:roomIdOrAlias", summary);
  unstable.get("/im.nheko.summary/rooms/:roomIdOrAlias/summary", summary);
  unstable.get("/uk.half-shot.msc2666/user/mutual_rooms", auth, mutualRooms);
  return { v1: v1 as unknown as Hono, unstable: unstable as unknown as Hono };
}
