/**
 * Server administration: `GET /v3/admin/whois/{userId}` and the account moderation endpoints
 * `GET/PUT /v1/admin/lock/{userId}` and `GET/PUT /v1/admin/suspend/{userId}`. Administrators are
 * the users named in `TESSERA_ADMINS`.
 */
import { Hono } from "hono";
import { z } from "zod";
import { MatrixError } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { userIdParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const lockBody = z.object({ locked: z.boolean() });
const suspendBody = z.object({ suspended: z.boolean() });

/** The server administration area. */
export function adminArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const v1 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const moderation = deps.moderation;

  // Synapse's rule: a user may look themselves up; anyone else needs an administrator.
  v3.get("/admin/whois/:userId", session, async (c) => {
    const target = userIdParam(c);
    const actor = c.get("session").userId;
    if (target !== actor && !moderation.isAdmin(actor)) {
      throw new MatrixError("M_FORBIDDEN", 403, "You are not a server administrator");
    }
    const devices: Record<string, { sessions: Array<{ connections: unknown[] }> }> = {};
    for (const device of await deps.accounts.listDevices(target)) {
      const connection: Record<string, unknown> = {};
      if (device.lastSeenIp !== undefined) connection.ip = device.lastSeenIp;
      if (device.lastSeenTs !== undefined) connection.last_seen = device.lastSeenTs;
      if (device.lastSeenUserAgent !== undefined) connection.user_agent = device.lastSeenUserAgent;
      devices[device.deviceId] = {
        sessions: [{ connections: Object.keys(connection).length > 0 ? [connection] : [] }],
      };
    }
    return c.json({ user_id: target, devices });
  });

  v1.get("/admin/lock/:userId", session, async (c) => {
    const status = await moderation.statusFor(c.get("session").userId, userIdParam(c));
    return c.json({ locked: status.locked });
  });

  v1.put("/admin/lock/:userId", session, async (c) => {
    const { locked } = await readJsonBody(c, lockBody);
    const status = await moderation.setLocked(c.get("session").userId, userIdParam(c), locked);
    return c.json({ locked: status.locked });
  });

  v1.get("/admin/suspend/:userId", session, async (c) => {
    const status = await moderation.statusFor(c.get("session").userId, userIdParam(c));
    return c.json({ suspended: status.suspended });
  });

  v1.put("/admin/suspend/:userId", session, async (c) => {
    const { suspended } = await readJsonBody(c, suspendBody);
    const status = await moderation.setSuspended(
      c.get("session").userId,
      userIdParam(c),
      suspended,
    );
    return c.json({ suspended: status.suspended });
  });

  return { v3: v3 as unknown as Hono, v1: v1 as unknown as Hono };
}
