/**
 * Rooms: `POST /createRoom`, `POST /rooms/{roomId}/upgrade`, `GET /joined_rooms`, and the member
 * reads `GET /rooms/{roomId}/members` and `/joined_members`.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited, takeRateLimit } from "./rate_limit_middleware.ts";
import { roomIdParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const jsonObject = z.record(z.string(), z.unknown()).transform((v) => v as JsonObject);

const createRoomBody = z.object({
  visibility: z.enum(["public", "private"]).optional(),
  room_alias_name: z.string().max(255).optional(),
  name: z.string().max(65_536).optional(),
  topic: z.string().max(65_536).optional(),
  invite: z.array(z.string().max(255)).max(1000).optional(),
  invite_3pid: z.array(
    z.object({
      id_server: z.string().max(255),
      id_access_token: z.string().max(4096),
      medium: z.string().max(32),
      address: z.string().max(512),
    }),
  ).max(100).optional(),
  room_version: z.string().max(64).optional(),
  creation_content: jsonObject.optional(),
  initial_state: z.array(
    z.object({
      type: z.string().min(1).max(255),
      state_key: z.string().max(255).optional(),
      content: jsonObject,
    }),
  ).max(500).optional(),
  preset: z.enum(["private_chat", "public_chat", "trusted_private_chat"]).optional(),
  is_direct: z.boolean().optional(),
  power_level_content_override: jsonObject.optional(),
});

const upgradeBody = z.object({
  new_version: z.string().max(64),
  additional_creators: z.array(z.string().max(255)).max(100).optional(),
});

const membersQuery = z.object({
  at: z.string().max(512).optional(),
  membership: z.enum(["join", "invite", "knock", "leave", "ban"]).optional(),
  not_membership: z.enum(["join", "invite", "knock", "leave", "ban"]).optional(),
});

/** The rooms area (v3 and r0). */
export function roomArea(deps: AppDeps): ClientArea {
  const app = new Hono<ClientEnv>();
  const { rooms } = deps;
  // Per route, not use("*"): a sub-app's "*" middleware would cover every area under the prefix.
  const auth = requireSession(deps.sessions);

  app.post("/createRoom", auth, rateLimited(deps, "create_room"), async (c) => {
    const body = await readJsonBody(c, createRoomBody);
    // Each invitee's limit, as through /invite: new rooms must not be a way around it.
    for (const invitee of new Set(body.invite ?? [])) {
      await takeRateLimit(deps, c, "invited", `user:${invitee}`);
    }
    for (const invite of body.invite_3pid ?? []) {
      await takeRateLimit(deps, c, "invited", `threepid:${invite.medium}:${invite.address}`);
    }
    const roomId = await rooms.creator.create({
      creator: c.get("session").userId,
      visibility: body.visibility,
      roomAliasName: body.room_alias_name,
      name: body.name,
      topic: body.topic,
      invite: body.invite,
      isDirect: body.is_direct,
      roomVersion: body.room_version,
      creationContent: body.creation_content,
      initialState: body.initial_state,
      preset: body.preset,
      powerLevelContentOverride: body.power_level_content_override,
    });
    // Third-party invites go out once the room exists, as Synapse sends them.
    for (const invite of body.invite_3pid ?? []) {
      await deps.thirdPartyInvites.invite(c.get("session").userId, roomId, {
        idServer: invite.id_server,
        idAccessToken: invite.id_access_token,
        medium: invite.medium,
        address: invite.address,
      });
    }
    return c.json({ room_id: roomId });
  });

  app.post("/rooms/:roomId/upgrade", auth, rateLimited(deps, "create_room"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, upgradeBody);
    const replacement = await rooms.upgrader.upgrade(
      c.get("session").userId,
      roomId,
      body.new_version,
      body.additional_creators,
    );
    return c.json({ replacement_room: replacement });
  });

  app.get("/joined_rooms", auth, async (c) => {
    return c.json({ joined_rooms: await rooms.membership.joinedRooms(c.get("session").userId) });
  });

  // Member events leave through the read pipeline (redactions applied, visibility checked).
  app.get("/rooms/:roomId/members", auth, async (c) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, membersQuery);
    const session = c.get("session");
    const chunk = await deps.roomEvents.reads.members(session, roomId, {
      at: query.at,
      membership: query.membership,
      notMembership: query.not_membership,
    });
    return c.json({ chunk });
  });

  app.get("/rooms/:roomId/joined_members", auth, async (c) => {
    const roomId = roomIdParam(c);
    const joined = await deps.roomEvents.reads.joinedMembers(c.get("session"), roomId);
    return c.json({ joined });
  });

  return { v3: app as unknown as Hono };
}
