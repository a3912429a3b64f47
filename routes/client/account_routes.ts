/**
 * Password change and deactivation (spec: "Account registration and management"), both behind
 * user-interactive auth with the user's current password.
 */
import { Hono } from "hono";
import { z } from "zod";
import { reauthenticationFlows } from "../../domain/accounts/uia_stages.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { accessTokenOf, type ClientEnv, requireSession } from "./session_middleware.ts";
import { MatrixError } from "../../domain/errors.ts";
import type { Session } from "../../domain/session.ts";
import {
  EMAIL_IDENTITY_STAGE,
  emailIdentityStage,
  provenThreepid,
} from "../../domain/threepid/email_identity_stage.ts";

/** The account management endpoints. */
export function accountArea(deps: AppDeps): ClientArea {
  const { accounts, uia } = deps;
  const v3 = new Hono<ClientEnv>();
  const signedIn = requireSession(deps.sessions);
  // Without an access token this is a password reset, proven by email instead of a password.
  v3.use(
    "/account/password",
    (c, next) => accessTokenOf(c) === undefined ? next() : signedIn(c, next),
  );
  v3.use("/account/deactivate", requireSession(deps.sessions));

  /** Ask for the user's current password before `action`. */
  const reauthenticate = (action: string, userId: string, auth: unknown) =>
    uia.authenticate({
      action,
      userId,
      auth,
      ...reauthenticationFlows(accounts, userId, { sso: deps.upstreamSignIn !== undefined }),
    });

  /** A forgotten password: the owner of an address validated by mail sets a new one. */
  const resetPassword = async (newPassword: string, logoutDevices: boolean, auth: unknown) => {
    if (!deps.threepids.validation.canValidateEmail) {
      throw new MatrixError("M_MISSING_TOKEN", 401, "Missing access token");
    }
    const finished = await uia.authenticate({
      action: "password_reset",
      auth,
      flows: [{ stages: [EMAIL_IDENTITY_STAGE] }],
      stages: { [EMAIL_IDENTITY_STAGE]: emailIdentityStage(deps.threepids.validation) },
    });
    const proven = provenThreepid(finished.results);
    const userId = proven && await deps.threepids.ownerOf(proven.medium, proven.address);
    if (!userId) throw new MatrixError("M_THREEPID_NOT_FOUND", 400, "No account has that address");
    await accounts.changePassword(userId, newPassword, logoutDevices);
  };

  v3.post("/account/password", async (c) => {
    // `m.change_password` says false then: a password that no sign-in accepts is not offered.
    if (!deps.config.oauth.passwordLogin) {
      throw new MatrixError("M_FORBIDDEN", 403, "Password change is disabled on this server");
    }
    const body = await readJsonBody(
      c,
      z.object({
        new_password: z.string(),
        logout_devices: z.boolean().optional(),
        auth: z.unknown().optional(),
      }),
    );
    const session = c.get("session") as Session | undefined;
    if (session === undefined) {
      await resetPassword(body.new_password, body.logout_devices ?? true, body.auth);
      return c.json({});
    }
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
    // Addresses are dropped and unbound first, so the answer can say whether that worked
    // (a deactivation hook finishes the job if this process dies on the way).
    const unbound = await deps.threepids.removeAll(userId, body.id_server);
    await accounts.deactivations.deactivate(userId, { erase: body.erase ?? false });
    return c.json({ id_server_unbind_result: unbound ? "success" : "no-support" });
  });

  return { v3: v3 as unknown as Hono };
}
