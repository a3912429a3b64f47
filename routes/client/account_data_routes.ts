/** Account data (global and per room) and room tags; only the user themself may use them. */
import { Hono } from "hono";
import { z } from "zod";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { pathParam, roomIdParam, userIdParam } from "./path_params.ts";

const objectBody = z.record(z.string(), z.unknown());
const tagBody = z.object({ order: z.number().min(0).max(1).optional() }).passthrough();

/** The account data and tags area. */
export function accountDataArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  // Per route, not `use("/user/*")`: a wildcard would also run on other areas' /user paths.
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "account_data");
  const data = deps.accountData;
  const me = (c: { get(key: "session"): { userId: string } }) => c.get("session").userId;

  v3.get("/user/:userId/account_data/:type", session, async (c) => {
    return c.json(await data.get(me(c), userIdParam(c), null, pathParam(c, "type")));
  });

  v3.put("/user/:userId/account_data/:type", session, limited, async (c) => {
    const userId = userIdParam(c);
    const type = pathParam(c, "type");
    const content = await readJsonBody(c, objectBody) as JsonObject;
    await data.put(me(c), userId, null, type, content);
    return c.json({});
  });

  v3.get("/user/:userId/rooms/:roomId/account_data/:type", session, async (c) => {
    const args = [userIdParam(c), roomIdParam(c), pathParam(c, "type")] as const;
    return c.json(await data.get(me(c), ...args));
  });

  v3.put("/user/:userId/rooms/:roomId/account_data/:type", session, limited, async (c) => {
    const userId = userIdParam(c);
    const roomId = roomIdParam(c);
    const type = pathParam(c, "type");
    const content = await readJsonBody(c, objectBody) as JsonObject;
    await data.put(me(c), userId, roomId, type, content);
    return c.json({});
  });

  v3.get("/user/:userId/rooms/:roomId/tags", session, async (c) => {
    return c.json(await data.tags(me(c), userIdParam(c), roomIdParam(c)));
  });

  v3.put("/user/:userId/rooms/:roomId/tags/:tag", session, limited, async (c) => {
    const userId = userIdParam(c);
    const roomId = roomIdParam(c);
    const tag = pathParam(c, "tag");
    const content = await readJsonBody(c, tagBody) as JsonObject;
    await data.putTag(me(c), userId, roomId, tag, content);
    return c.json({});
  });

  v3.delete("/user/:userId/rooms/:roomId/tags/:tag", session, limited, async (c) => {
    await data.deleteTag(me(c), userIdParam(c), roomIdParam(c), pathParam(c, "tag"));
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}
