/**
 * Device management (spec: "Device management"): list, read, rename and delete the user's
 * devices. Deleting devices needs user-interactive auth and revokes their tokens at once.
 */
import { Hono } from "hono";
import { z } from "zod";
import { notFound } from "../../domain/errors.ts";
import type { DeviceRecord } from "../../domain/ports/account_store.ts";
import { reauthenticationFlows } from "../../domain/accounts/uia_stages.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { pathParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** Longest device display name accepted. */
export const DEVICE_DISPLAY_NAME_MAX = 512;
/** Most devices one /delete_devices request may name. */
const MAX_DELETE_DEVICES = 1000;

/** The spec's Device object. */
function deviceJson(device: DeviceRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { device_id: device.deviceId };
  if (device.displayName !== undefined) out.display_name = device.displayName;
  if (device.lastSeenTs !== undefined) out.last_seen_ts = device.lastSeenTs;
  if (device.lastSeenIp !== undefined) out.last_seen_ip = device.lastSeenIp;
  return out;
}

/** The device endpoints. */
export function deviceArea(deps: AppDeps): ClientArea {
  const { accounts, uia } = deps;
  const v3 = new Hono<ClientEnv>();
  v3.use("/devices", requireSession(deps.sessions));
  v3.use("/devices/*", requireSession(deps.sessions));
  v3.use("/delete_devices", requireSession(deps.sessions));

  /**
   * Delete devices after the user re-enters their password. The session is bound to these
   * devices: one started to delete a device cannot delete another (403).
   */
  async function deleteWithAuth(userId: string, auth: unknown, deviceIds: string[]) {
    await uia.authenticate({
      action: "delete_devices",
      operation: JSON.stringify([...new Set(deviceIds)].sort()),
      userId,
      auth,
      ...reauthenticationFlows(accounts, userId, { sso: deps.upstreamSignIn !== undefined }),
    });
    await accounts.deleteDevices(userId, deviceIds);
  }

  v3.get("/devices", async (c) => {
    const devices = await accounts.listDevices(c.get("session").userId);
    return c.json({ devices: devices.map(deviceJson) });
  });

  v3.get("/devices/:deviceId", async (c) => {
    const device = await accounts.getDevice(c.get("session").userId, pathParam(c, "deviceId"));
    if (!device) throw notFound("No such device");
    return c.json(deviceJson(device));
  });

  v3.put("/devices/:deviceId", rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({ display_name: z.string().max(DEVICE_DISPLAY_NAME_MAX).optional() }),
      { emptyAsObject: true },
    );
    const { userId } = c.get("session");
    const deviceId = pathParam(c, "deviceId");
    const found = body.display_name === undefined
      ? (await accounts.getDevice(userId, deviceId)) !== null
      : await accounts.renameDevice(userId, deviceId, body.display_name);
    if (!found) throw notFound("No such device");
    return c.json({});
  });

  v3.delete("/devices/:deviceId", async (c) => {
    const body = await readJsonBody(c, z.object({ auth: z.unknown().optional() }), {
      emptyAsObject: true,
    });
    const { userId } = c.get("session");
    const deviceId = pathParam(c, "deviceId");
    // A missing device is reported before asking for a password the client need not give.
    if (!(await accounts.getDevice(userId, deviceId))) throw notFound("No such device");
    await deleteWithAuth(userId, body.auth, [deviceId]);
    return c.json({});
  });

  v3.post("/delete_devices", async (c) => {
    const body = await readJsonBody(
      c,
      z.object({
        devices: z.array(z.string()).max(MAX_DELETE_DEVICES),
        auth: z.unknown().optional(),
      }),
    );
    await deleteWithAuth(c.get("session").userId, body.auth, body.devices);
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}
