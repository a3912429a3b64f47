/** OpenID: `POST /user/{userId}/openid/request_token` (spec: Client-Server "OpenID"). */
import { Hono } from "hono";
import { z } from "zod";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { userIdParam } from "./path_params.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

// "An empty object. Reserved for future expansion": anything in it is ignored.
const requestBody = z.object({}).passthrough();

/** The OpenID area (v3 and r0). */
export function openIdArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);

  v3.post(
    "/user/:userId/openid/request_token",
    session,
    rateLimited(deps, "user_write"),
    async (c) => {
      const userId = userIdParam(c);
      await readJsonBody(c, requestBody, { emptyAsObject: true });
      return c.json(await deps.openIdTokens.request(c.get("session").userId, userId));
    },
  );

  return { v3: v3 as unknown as Hono };
}
