/** `PUT /sendToDevice/{eventType}/{txnId}` (spec: "Send-to-Device messaging"). */
import { Hono } from "hono";
import { z } from "zod";
import { invalidParam } from "../../domain/errors.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { pathParam } from "./path_params.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/**
 * Largest request body. Clients fan one room key out to every device of a room in one request
 * (matrix-rust-sdk: up to 250 olm messages of 2-3 KB each), so the usual 1 MiB is too tight;
 * the store splits what KV cannot take in one commit.
 */
export const MAX_TO_DEVICE_BODY_BYTES = 4 * 1024 * 1024;

/** Longest event type and transaction ID accepted in the path. */
const MAX_PATH_ID_LENGTH = 255;

/** userId -> (deviceId or `*`) -> content object; IDs and sizes are checked by the service. */
const sendBody = z.object({
  messages: z.record(
    z.string(),
    z.record(z.string(), z.record(z.string(), z.unknown())),
  ),
});

/** The send-to-device area. */
export function toDeviceArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);

  v3.put("/sendToDevice/:eventType/:txnId", session, rateLimited(deps, "to_device"), async (c) => {
    const eventType = pathParam(c, "eventType");
    if (eventType.length > MAX_PATH_ID_LENGTH) throw invalidParam("Event type is too long");
    const txnId = pathParam(c, "txnId");
    if (txnId.length > MAX_PATH_ID_LENGTH) throw invalidParam("Transaction ID is too long");
    const body = await readJsonBody(c, sendBody, { maxBytes: MAX_TO_DEVICE_BODY_BYTES });
    const { userId, deviceId } = c.get("session");
    await deps.toDevice.send({
      sender: userId,
      senderDeviceId: deviceId,
      txnId,
      eventType,
      messages: body.messages as Record<string, Record<string, JsonObject>>,
    });
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}
