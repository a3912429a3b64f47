/**
 * Dehydrated devices (MSC3814) under `/_matrix/client/unstable/org.matrix.msc3814.v1`, as
 * Synapse serves them: `GET|PUT|DELETE /dehydrated_device` and the device's to-device inbox at
 * `/dehydrated_device/{deviceId}/events`, by GET (`?from=`; `next_batch` only while messages
 * remain, which current clients such as matrix-js-sdk loop on) and by the earlier draft's POST
 * (`{"next_batch"}` in the body; `next_batch` always present).
 */
import { Hono } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { DEVICE_DISPLAY_NAME_MAX } from "./device_routes.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { pathParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The MSC's unstable prefix, below `/_matrix/client/unstable`. */
const MSC3814 = "/org.matrix.msc3814.v1";

const keyMap = z.record(z.string(), z.unknown());

/** Shapes only; the service checks IDs, `device_data` and the keys (as `/keys/upload` does). */
const putBody = z.object({
  device_id: z.string(),
  device_data: z.unknown(),
  initial_device_display_name: z.string().max(DEVICE_DISPLAY_NAME_MAX).optional(),
  device_keys: z.record(z.string(), z.unknown()).optional(),
  one_time_keys: keyMap.optional(),
  fallback_keys: keyMap.optional(),
  "org.matrix.msc2732.fallback_keys": keyMap.optional(),
});

const eventsBody = z.object({ next_batch: z.string().optional() });

const limitQuery = wholeNumberQuery().optional();
const eventsQuery = z.object({ from: z.string().optional(), limit: limitQuery });

/** The dehydrated-device area. */
export function dehydratedDeviceArea(deps: AppDeps): ClientArea {
  const unstable = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "user_write");
  const dehydrated = deps.dehydratedDevices;

  unstable.get(`${MSC3814}/dehydrated_device`, session, async (c) => {
    return c.json(await dehydrated.get(c.get("session").userId));
  });

  unstable.put(`${MSC3814}/dehydrated_device`, session, limited, async (c) => {
    const body = await readJsonBody(c, putBody);
    const { device_id, device_data, initial_device_display_name, ...keys } = body;
    return c.json(
      await dehydrated.put(c.get("session").userId, {
        deviceId: device_id,
        deviceData: device_data,
        displayName: initial_device_display_name,
        keys,
      }),
    );
  });

  unstable.delete(`${MSC3814}/dehydrated_device`, session, limited, async (c) => {
    return c.json(await dehydrated.delete(c.get("session").userId));
  });

  unstable.get(`${MSC3814}/dehydrated_device/:deviceId/events`, session, async (c) => {
    const query = readQuery(c, eventsQuery);
    const page = await dehydrated.events(
      c.get("session").userId,
      pathParam(c, "deviceId"),
      query.from,
      query.limit,
    );
    return c.json(
      page.more ? { events: page.events, next_batch: page.nextBatch } : {
        events: page.events,
      },
    );
  });

  // The earlier draft's form, still sent by older clients: the token in the body, and a
  // `next_batch` in every answer (an empty page tells the client it has everything).
  unstable.post(`${MSC3814}/dehydrated_device/:deviceId/events`, session, async (c) => {
    const body = await readJsonBody(c, eventsBody, { emptyAsObject: true });
    const query = readQuery(c, z.object({ limit: limitQuery }));
    const page = await dehydrated.events(
      c.get("session").userId,
      pathParam(c, "deviceId"),
      body.next_batch,
      query.limit,
    );
    return c.json({ events: page.events, next_batch: page.nextBatch });
  });

  return { unstable: unstable as unknown as Hono };
}
