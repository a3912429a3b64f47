/**
 * Membership: join (by ID or alias), knock, invite, leave, forget, kick, ban and unban. Each
 * change is one member event through the local event sender, so the auth rules decide.
 */
import { Hono } from "hono";
import { z } from "zod";
import { isValidUserId } from "../../domain/identifiers.ts";
import type { JsonObject } from "../../domain/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited, takeRateLimit } from "./rate_limit_middleware.ts";
import { roomIdOrAliasParam, roomIdParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const reason = z.string().max(4096).optional();
const userId = z.string().max(255).refine(isValidUserId, "must be a valid user ID");
// Other keys of a join body go into the member event's content, as Synapse puts them.
const joinBody = z.object({ reason, third_party_signed: z.unknown().optional() }).passthrough();
const reasonBody = z.object({ reason });
const targetBody = z.object({ user_id: userId, reason });

/** The membership area (v3 and r0). */
export function membershipArea(deps: AppDeps): ClientArea {
  const app = new Hono<ClientEnv>();
  const { membership } = deps.rooms;
  // Per route, not use("*"): a sub-app's "*" middleware would cover every area under the prefix.
  const auth = requireSession(deps.sessions);
  const user = (c: { get(key: "session"): { userId: string } }) => c.get("session").userId;

  // `via`/`server_name` only matter for joins over federation, which are not supported yet.
  app.post("/join/:roomIdOrAlias", auth, rateLimited(deps, "join"), async (c) => {
    const target = roomIdOrAliasParam(c);
    const { reason, third_party_signed: _signed, ...content } = await readJsonBody(c, joinBody, {
      emptyAsObject: true,
    });
    return c.json({
      room_id: await membership.join(user(c), target, reason, content as JsonObject),
    });
  });

  app.post("/rooms/:roomId/join", auth, rateLimited(deps, "join"), async (c) => {
    const roomId = roomIdParam(c);
    const { reason, third_party_signed: _signed, ...content } = await readJsonBody(c, joinBody, {
      emptyAsObject: true,
    });
    return c.json({
      room_id: await membership.join(user(c), roomId, reason, content as JsonObject),
    });
  });

  app.post("/knock/:roomIdOrAlias", auth, rateLimited(deps, "join"), async (c) => {
    const target = roomIdOrAliasParam(c);
    const body = await readJsonBody(c, reasonBody, { emptyAsObject: true });
    return c.json({ room_id: await membership.knock(user(c), target, body.reason) });
  });

  app.post("/rooms/:roomId/invite", auth, rateLimited(deps, "invite"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, targetBody);
    // Per invitee too: many inviters must not bury one user's sync under invites.
    takeRateLimit(deps, c, "invited", `user:${body.user_id}`);
    await membership.invite(user(c), roomId, body.user_id, { reason: body.reason });
    return c.json({});
  });

  app.post("/rooms/:roomId/leave", auth, rateLimited(deps, "membership"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, reasonBody, { emptyAsObject: true });
    await membership.leave(user(c), roomId, body.reason);
    return c.json({});
  });

  app.post("/rooms/:roomId/forget", auth, rateLimited(deps, "membership"), async (c) => {
    const roomId = roomIdParam(c);
    await readJsonBody(c, z.object({}), { emptyAsObject: true });
    await membership.forget(user(c), roomId);
    return c.json({});
  });

  app.post("/rooms/:roomId/kick", auth, rateLimited(deps, "membership"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, targetBody);
    await membership.kick(user(c), roomId, body.user_id, body.reason);
    return c.json({});
  });

  app.post("/rooms/:roomId/ban", auth, rateLimited(deps, "membership"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, targetBody);
    await membership.ban(user(c), roomId, body.user_id, body.reason);
    return c.json({});
  });

  app.post("/rooms/:roomId/unban", auth, rateLimited(deps, "membership"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, targetBody);
    await membership.unban(user(c), roomId, body.user_id, body.reason);
    return c.json({});
  });

  return { v3: app as unknown as Hono };
}
