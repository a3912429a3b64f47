/** Pushers: `GET /pushers` and `POST /pushers/set` (add, replace, append, delete by `kind: null`). */
import { Hono } from "hono";
import { z } from "zod";
import { isJsonObject, type JsonObject } from "../../domain/protocol/json.ts";
import { pusherView } from "../../domain/push/pushers.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const MAX_TEXT = 1_000;
const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

const setBody = z.object({
  kind: z.string().min(1).max(64).nullable(),
  // The spec's limits: app_id at most 64 characters, pushkey at most 512 bytes.
  app_id: z.string().min(1).max(64),
  pushkey: z.string().min(1).refine((s) => utf8Bytes(s) <= 512, "must be at most 512 bytes"),
  app_display_name: z.string().max(MAX_TEXT).optional(),
  device_display_name: z.string().max(MAX_TEXT).optional(),
  profile_tag: z.string().max(MAX_TEXT).optional(),
  lang: z.string().max(64).optional(),
  data: z.custom<JsonObject>(isJsonObject, "must be a JSON object").optional(),
  append: z.boolean().optional(),
});

/** The pushers area. */
export function pusherArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "push_rules");

  v3.get("/pushers", session, async (c) => {
    const pushers = await deps.pushers.list(c.get("session").userId);
    return c.json({ pushers: pushers.map(pusherView) });
  });

  v3.post("/pushers/set", session, limited, async (c) => {
    const { userId, deviceId } = c.get("session");
    const body = await readJsonBody(c, setBody);
    await deps.pushers.set(userId, deviceId, body);
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}
