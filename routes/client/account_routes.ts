/**
 * Password change and deactivation (spec: "Account registration and management"), both behind
 * user-interactive auth with the user's current password.
 */
import { Hono } from "hono";
import { z } from "zod";
import { passwordStage } from "../../domain/accounts/uia_stages.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The account management endpoints. */
export function accountArea(deps: AppDeps): ClientArea {
  const { accounts, uia } = deps;
  const v3 = new Hono<ClientEnv>();
  v3.use("/account/password", requireSession(deps.sessions));
  v3.use("/account/deactivate", requireSession(deps.sessions));

  /** Ask for the user's current password before `action`. */
  const reauthenticate = (action: string, userId: string, auth: unknown) =>
    uia.authenticate({
      action,
      userId,
      auth,
      flows: [{ stages: ["m.login.password"] }],
      stages: { "m.login.password": passwordStage(accounts, userId) },
    });

  v3.post("/account/password", async (c) => {
    const body = await readJsonBody(
      c,
      z.object({
        new_password: z.string(),
        logout_devices: z.boolean().optional(),
        auth: z.unknown().optional(),
      }),
    );
    const session = c.get("session");
    await reauthenticate("password", session.userId, body.auth);
    // The spec's default is to log out every other device: a changed password usually means
    // the old one leaked.
    await accounts.changePassword(
      session.userId,
      body.new_password,
      body.logout_devices ?? true,
      session.deviceId,
    );
    return c.json({});
  });

  v3.post("/account/deactivate", async (c) => {
    const body = await readJsonBody(
      c,
      z.object({
        auth: z.unknown().optional(),
        erase: z.boolean().optional(),
        id_server: z.string().optional(),
      }),
      { emptyAsObject: true },
    );
    const { userId } = c.get("session");
    await reauthenticate("deactivate", userId, body.auth);
    await accounts.deactivate(userId, { erase: body.erase ?? false });
    // No identity server bindings are kept, so there is nothing to unbind.
    return c.json({ id_server_unbind_result: "no-support" });
  });

  return { v3: v3 as unknown as Hono };
}
