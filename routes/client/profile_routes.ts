/**
 * Profiles: `GET /profile/{userId}`, and `GET/PUT/DELETE /profile/{userId}/{keyName}`, which
 * also serves the legacy `displayname` and `avatar_url` paths.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { badJson, missingParam } from "../../domain/errors.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";
import { checkProfileKey } from "../../domain/profile/profile_service.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { userIdParam } from "./path_params.ts";

const fieldBody = z.record(z.string(), z.unknown());

/** The profile area. */
export function profileArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const profiles = deps.profiles;

  // Reading profiles needs no token, as Synapse's default and most clients expect.
  v3.get("/profile/:userId", async (c) => {
    return c.json(await profiles.fullProfile(userIdParam(c)));
  });

  v3.get("/profile/:userId/:keyName", async (c) => {
    const key = profileKeyParam(c);
    const value = await profiles.field(userIdParam(c), key);
    return c.json({ [key]: value });
  });

  v3.put("/profile/:userId/:keyName", session, rateLimited(deps, "profile"), async (c) => {
    const userId = userIdParam(c);
    const key = profileKeyParam(c);
    checkProfileKey(key);
    const body = await readJsonBody(c, fieldBody);
    if (!(key in body)) throw missingParam(`Missing '${key}' in the body`);
    if (Object.keys(body).length !== 1) throw badJson(`The body must hold only '${key}'`);
    await profiles.setField(c.get("session").userId, userId, key, body[key] as JsonValue);
    return c.json({});
  });

  v3.delete("/profile/:userId/:keyName", session, rateLimited(deps, "profile"), async (c) => {
    const userId = userIdParam(c);
    await profiles.deleteField(c.get("session").userId, userId, profileKeyParam(c));
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}

/**
 * The `{keyName}` of a profile path, checked against the profile key grammar first: a key over
 * 255 bytes is the spec's M_KEY_TOO_LARGE, not the generic over-long parameter error.
 */
function profileKeyParam(c: Context): string {
  const key = c.req.param("keyName") ?? "";
  checkProfileKey(key);
  return key;
}
