/**
 * Membership: join (by ID or alias), knock, invite, leave, forget, kick, ban and unban. Each
 * change is one member event through the local event sender, so the auth rules decide.
 */
import { Hono } from "hono";
import { z } from "zod";
import { isValidServerName, isValidUserId } from "../../domain/protocol/identifiers.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { invalidParam, missingParam } from "../../domain/errors.ts";
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
// An invite names a user, or a third-party identifier and the identity server to look it up.
const inviteBody = z.object({
  user_id: userId.optional(),
  reason,
  id_server: z.string().max(255).optional(),
  id_access_token: z.string().max(4096).optional(),
  medium: z.string().max(32).optional(),
  address: z.string().max(512).optional(),
});

/** The servers of a join's `via`/`server_name`: valid server names, at most 50 (400 otherwise). */
function joinServers(names: string[]): string[] {
  if (names.length > 50) throw invalidParam("At most 50 servers in via and server_name");
  for (const name of names) {
    if (!isValidServerName(name)) throw invalidParam(`Invalid server name ${JSON.stringify(name)}`);
  }
  return names;
}

/** Turn `third_party_signed` (`{sender, mxid, token, signatures}`) into the joiner's invite. */
async function exchangeSigned(deps: AppDeps, userId: string, roomId: string, signed: unknown) {
  const sender = typeof signed === "object" && signed !== null
    ? (signed as Record<string, unknown>).sender
    : undefined;
  if (typeof sender !== "string") throw missingParam("third_party_signed needs a sender");
  await deps.thirdPartyInvites.exchange(sender, userId, roomId, signed);
}

/** The membership area (v3 and r0). */
export function membershipArea(deps: AppDeps): ClientArea {
  const app = new Hono<ClientEnv>();
  const { membership } = deps.rooms;
  // Per route, not use("*"): a sub-app's "*" middleware would cover every area under the prefix.
  const auth = requireSession(deps.sessions);
  const user = (c: { get(key: "session"): { userId: string } }) => c.get("session").userId;

  // `via` (and the older `server_name`) name servers to join a remote room through.
  app.post("/join/:roomIdOrAlias", auth, rateLimited(deps, "join"), async (c) => {
    const target = roomIdOrAliasParam(c);
    const servers = joinServers([
      ...(c.req.queries("via") ?? []),
      ...(c.req.queries("server_name") ?? []),
    ]);
    const { reason, third_party_signed: _signed, ...content } = await readJsonBody(c, joinBody, {
      emptyAsObject: true,
    });
    return c.json({
      room_id: await membership.join(user(c), target, reason, content as JsonObject, servers),
    });
  });

  app.post("/rooms/:roomId/join", auth, rateLimited(deps, "join"), async (c) => {
    const roomId = roomIdParam(c);
    const { reason, third_party_signed: signed, ...content } = await readJsonBody(c, joinBody, {
      emptyAsObject: true,
    });
    // Proof from an identity server that the joiner owns an invited address: the invite is
    // exchanged first, from its original inviter.
    if (signed !== undefined) await exchangeSigned(deps, user(c), roomId, signed);
    return c.json({
      room_id: await membership.join(user(c), roomId, reason, content as JsonObject),
    });
  });

  // A room this server is not in is knocked on through `via` (or `server_name`), as a join.
  app.post("/knock/:roomIdOrAlias", auth, rateLimited(deps, "join"), async (c) => {
    const target = roomIdOrAliasParam(c);
    const servers = joinServers([
      ...(c.req.queries("via") ?? []),
      ...(c.req.queries("server_name") ?? []),
    ]);
    const body = await readJsonBody(c, reasonBody, { emptyAsObject: true });
    return c.json({ room_id: await membership.knock(user(c), target, body.reason, servers) });
  });

  app.post("/rooms/:roomId/invite", auth, rateLimited(deps, "invite"), async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, inviteBody);
    if (body.user_id === undefined) {
      if (body.medium === undefined || body.address === undefined || body.id_server === undefined) {
        throw missingParam("Give user_id, or id_server, medium and address");
      }
      if (body.id_access_token === undefined) throw missingParam("Missing id_access_token");
      await takeRateLimit(deps, c, "invited", `threepid:${body.medium}:${body.address}`);
      await deps.thirdPartyInvites.invite(user(c), roomId, {
        idServer: body.id_server,
        idAccessToken: body.id_access_token,
        medium: body.medium,
        address: body.address,
      });
      return c.json({});
    }
    // Per invitee too: many inviters must not bury one user's sync under invites.
    await takeRateLimit(deps, c, "invited", `user:${body.user_id}`);
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
