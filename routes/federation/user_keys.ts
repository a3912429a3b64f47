/**
 * End-to-end encryption keys for other servers (spec, Server-Server API: "End-to-End
 * Encryption"): `POST /_matrix/federation/v1/user/keys/query`, `POST .../user/keys/claim` and
 * `GET .../user/devices/{userId}`, for this server's users only. Every route verifies the
 * X-Matrix signature (`serverAuth`) and validates its body before any read.
 */
import { Hono } from "hono";
import { z } from "zod";
import { invalidParam } from "../../domain/errors.ts";
import { isValidDeviceId, isValidUserId } from "../../domain/protocol/identifiers.ts";
import { isValidAlgorithm } from "../../domain/e2ee/key_upload_validation.ts";
import { MAX_CLAIMED_DEVICES } from "../../domain/e2ee/device_key_service.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import { userIdParam } from "../client/path_params.ts";
import { MAX_KEY_QUERY_USERS } from "../client/cross_signing_routes.ts";
import { takeRateLimit } from "../client/rate_limit_middleware.ts";
import { MAX_FEDERATION_BODY_BYTES, originOf, serverAuth } from "./server_auth.ts";

/** Device IDs one queried user may name (as in the Client-Server query). */
const MAX_QUERIED_DEVICES = 1000;

const userId = z.string().refine(isValidUserId, "must be a valid user ID");
const deviceId = z.string().refine(isValidDeviceId, "must be a valid device ID");
const algorithm = z.string().refine(isValidAlgorithm, "must be a valid algorithm name");

const queryBody = z.object({
  device_keys: z.record(userId, z.array(deviceId).max(MAX_QUERIED_DEVICES)),
});

const claimBody = z.object({
  one_time_keys: z.record(userId, z.record(deviceId, algorithm)),
});

/** The federation key routes, signature-checked. */
export function federationUserKeysApp(deps: AppDeps): Hono {
  const app = new Hono();
  const auth = serverAuth(deps);
  const keys = deps.serverKeyQueries;
  const v1 = "/_matrix/federation/v1";

  app.post(`${v1}/user/keys/query`, auth, async (c) => {
    const body = await readJsonBody(c, queryBody, { maxBytes: MAX_FEDERATION_BODY_BYTES });
    if (Object.keys(body.device_keys).length > MAX_KEY_QUERY_USERS) {
      throw invalidParam(`At most ${MAX_KEY_QUERY_USERS} users may be queried at once`);
    }
    return c.json(await keys.query(body.device_keys));
  });

  app.post(`${v1}/user/keys/claim`, auth, async (c) => {
    await takeRateLimit(deps, c, "federation_key_claim", `server:${originOf(c)}`);
    const body = await readJsonBody(c, claimBody, { maxBytes: MAX_FEDERATION_BODY_BYTES });
    const count = Object.values(body.one_time_keys)
      .reduce((n, devices) => n + Object.keys(devices).length, 0);
    if (count > MAX_CLAIMED_DEVICES) {
      throw invalidParam(`A claim may name at most ${MAX_CLAIMED_DEVICES} devices`);
    }
    return c.json(await keys.claim(body.one_time_keys));
  });

  app.get(`${v1}/user/devices/:userId`, auth, async (c) => {
    return c.json(await keys.userDevices(userIdParam(c)));
  });

  return app;
}
