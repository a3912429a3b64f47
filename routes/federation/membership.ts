/**
 * The membership handshakes other servers call: make_join and send_join (v1, v2), make_leave
 * and send_leave (v1, v2), make_knock and send_knock, and invite (v1, v2). Every route
 * authenticates its caller (X-Matrix) and leaves the protocol to
 * domain/federation/membership_handshakes.ts. v1 of send_join, send_leave and invite answers
 * `[200, body]`, a wart of the first Synapse the spec kept.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { MatrixError } from "../../domain/errors.ts";
import type { HandshakeMembership } from "../../domain/federation/membership_template.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";
import { pathParam, roomIdParam, userIdParam } from "../client/path_params.ts";
import { takeRateLimit } from "../client/rate_limit_middleware.ts";
import type { AppDeps } from "../deps.ts";
import { originOf, serverAuth, signedContent } from "./server_auth.ts";

const FEDERATION = "/_matrix/federation";

/**
 * The event ID of a send_ or invite path: only bounded here, since it must equal the ID of the
 * event in the body, which the handshake checks after the body (a bad body is M_BAD_JSON
 * whatever the path says, as Synapse answers).
 */
const eventParam = (c: Context) => pathParam(c, "eventId");

// `ver` may repeat; each entry is a room version identifier (at most 32 code points).
const versions = z.array(z.string().max(32)).max(100);
const inviteV2Body = z.object({
  room_version: z.string().max(32),
  event: z.record(z.string(), z.unknown()),
  invite_room_state: z.array(z.unknown()).max(100).optional(),
});

/** The membership handshake routes. */
export function federationMembershipApp(deps: AppDeps): Hono {
  const app = new Hono();
  const auth = serverAuth(deps);
  const handshakes = deps.membershipHandshakes;

  const make = (membership: HandshakeMembership) => async (c: Context) => {
    const ver = c.req.queries("ver");
    const parsed = versions.safeParse(ver ?? []);
    if (!parsed.success) throw new MatrixError("M_INVALID_PARAM", 400, "Bad ver parameter");
    const template = await handshakes.makeMembership(
      originOf(c),
      roomIdParam(c),
      userIdParam(c),
      membership,
      ver === undefined ? undefined : parsed.data,
    );
    return c.json(template);
  };
  const send = (c: Context, membership: HandshakeMembership) =>
    handshakes.sendMembership(
      originOf(c),
      roomIdParam(c),
      eventParam(c),
      signedContent(c),
      membership,
    );

  app.get(`${FEDERATION}/v1/make_join/:roomId/:userId`, auth, make("join"));
  app.get(`${FEDERATION}/v1/make_leave/:roomId/:userId`, auth, make("leave"));
  app.get(`${FEDERATION}/v1/make_knock/:roomId/:userId`, auth, make("knock"));

  app.put(`${FEDERATION}/v1/send_join/:roomId/:eventId`, auth, async (c) => {
    const joined = await send(c, "join");
    return c.json([200, await handshakes.joinAnswer(originOf(c), roomIdParam(c), joined)]);
  });
  app.put(`${FEDERATION}/v2/send_join/:roomId/:eventId`, auth, async (c) => {
    const joined = await send(c, "join");
    return c.json(await handshakes.joinAnswer(originOf(c), roomIdParam(c), joined));
  });
  app.put(`${FEDERATION}/v1/send_leave/:roomId/:eventId`, auth, async (c) => {
    await send(c, "leave");
    return c.json([200, {}]);
  });
  app.put(`${FEDERATION}/v2/send_leave/:roomId/:eventId`, auth, async (c) => {
    await send(c, "leave");
    return c.json({});
  });
  app.put(`${FEDERATION}/v1/send_knock/:roomId/:eventId`, auth, async (c) => {
    const knocked = await send(c, "knock");
    const state = await handshakes.knockAnswer(originOf(c), roomIdParam(c), knocked.version);
    return c.json({ knock_room_state: state });
  });

  // Per inviting server, before any work: a flood of invites costs the sender, not us.
  const inviteLimit: MiddlewareHandler = async (c, next) => {
    await takeRateLimit(deps, c, "federation_invite", `server:${originOf(c)}`);
    await next();
  };
  app.put(`${FEDERATION}/v1/invite/:roomId/:eventId`, auth, inviteLimit, async (c) => {
    const event = await handshakes.receiveInvite(originOf(c), roomIdParam(c), eventParam(c), {
      event: signedContent(c),
    });
    return c.json([200, { event }]);
  });
  app.put(`${FEDERATION}/v2/invite/:roomId/:eventId`, auth, inviteLimit, async (c) => {
    const parsed = inviteV2Body.safeParse(signedContent(c));
    if (!parsed.success) {
      throw new MatrixError("M_BAD_JSON", 400, "Expected room_version, event, invite_room_state");
    }
    const event = await handshakes.receiveInvite(originOf(c), roomIdParam(c), eventParam(c), {
      event: parsed.data.event as JsonValue,
      roomVersion: parsed.data.room_version,
      inviteRoomState: parsed.data.invite_room_state as JsonValue | undefined,
    });
    return c.json({ event });
  });
  return app;
}
