/**
 * Uploading and claiming end-to-end encryption keys (spec: "Key management API"):
 * `POST /keys/upload` (and the legacy r0 form `/keys/upload/{deviceId}`, which must name the
 * session's own device) and `POST /keys/claim`.
 */
import { Hono } from "hono";
import { z } from "zod";
import { invalidParam } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { pathParam } from "./path_params.ts";
import { rateLimited } from "./rate_limit_middleware.ts";

/** The spec's recommended claim timeout, used when the client sends none. */
const DEFAULT_CLAIM_TIMEOUT_MS = 10_000;
/** Longest claim timeout honoured; longer ones are cut to it. */
export const MAX_CLAIM_TIMEOUT_MS = 60_000;

const keyMap = z.record(z.string(), z.unknown());

const uploadBody = z.object({
  device_keys: z.record(z.string(), z.unknown()).optional(),
  one_time_keys: keyMap.optional(),
  fallback_keys: keyMap.optional(),
  "org.matrix.msc2732.fallback_keys": keyMap.optional(),
});

const claimBody = z.object({
  one_time_keys: z.record(z.string(), z.record(z.string(), z.string())),
  timeout: z.number().finite().optional(),
});

/** The key upload and claim endpoints. */
export function keysUploadArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const keys = deps.deviceKeys;

  v3.post("/keys/upload", session, rateLimited(deps, "user_write"), async (c) => {
    const { userId, deviceId } = c.get("session");
    const body = await readJsonBody(c, uploadBody);
    return c.json(await keys.upload(userId, deviceId, body));
  });

  // r0 clients (matrix-nio among them) may still name the device in the path.
  v3.post("/keys/upload/:deviceId", session, rateLimited(deps, "user_write"), async (c) => {
    const { userId, deviceId } = c.get("session");
    if (pathParam(c, "deviceId") !== deviceId) {
      throw invalidParam("Keys can only be uploaded for the session's own device");
    }
    const body = await readJsonBody(c, uploadBody);
    return c.json(await keys.upload(userId, deviceId, body));
  });

  v3.post("/keys/claim", session, rateLimited(deps, "key_claim"), async (c) => {
    const body = await readJsonBody(c, claimBody);
    const timeout = Math.min(
      Math.max(body.timeout ?? DEFAULT_CLAIM_TIMEOUT_MS, 0),
      MAX_CLAIM_TIMEOUT_MS,
    );
    return c.json(await keys.claim(body.one_time_keys, timeout));
  });

  return { v3: v3 as unknown as Hono };
}
