/**
 * Registration, login, token refresh, logout and whoami (spec: "Client Authentication" and
 * "Account registration and management").
 */
import { Hono } from "hono";
import { z } from "zod";
import { forbidden, MatrixError } from "../../domain/errors.ts";
import type { IssuedSession } from "../../domain/accounts/account_service.ts";
import {
  dummyStage,
  identifiedUser,
  reauthenticationFlows,
  registrationTokenStage,
  sameSecret,
} from "../../domain/accounts/uia_stages.ts";
import type { UiaFlow, UiaStageHandler } from "../../domain/accounts/user_interactive_auth.ts";
import { Registration } from "../../domain/accounts/registration.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import {
  EMAIL_IDENTITY_STAGE,
  emailIdentityStage,
  provenThreepid,
} from "../../domain/threepid/email_identity_stage.ts";
import { thirdPartyLoginIdentifier } from "../../domain/threepid/threepid_login.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { rateLimited } from "./rate_limit_middleware.ts";

import { DEVICE_DISPLAY_NAME_MAX } from "./device_routes.ts";

const authDict = z.unknown().optional();

const registerBody = z.object({
  auth: authDict,
  username: z.string().max(255).optional(),
  password: z.string().optional(),
  device_id: z.string().optional(),
  initial_device_display_name: z.string().max(DEVICE_DISPLAY_NAME_MAX).optional(),
  inhibit_login: z.boolean().optional(),
  refresh_token: z.boolean().optional(),
  /** Synapse's guest upgrade: register the guest's own user ID as a full account. */
  guest_access_token: z.string().max(1024).optional(),
});

const guestRegisterBody = z.object({
  initial_device_display_name: z.string().max(DEVICE_DISPLAY_NAME_MAX).optional().catch(
    undefined,
  ),
});

const loginBody = z.object({
  type: z.string(),
  identifier: z.unknown().optional(),
  user: z.unknown().optional(),
  // r0's 3PID login: the address beside the password instead of an identifier.
  medium: z.unknown().optional(),
  address: z.unknown().optional(),
  password: z.string().optional(),
  token: z.string().optional(),
  device_id: z.string().optional(),
  initial_device_display_name: z.string().max(DEVICE_DISPLAY_NAME_MAX).optional(),
  refresh_token: z.boolean().optional(),
});

/**
 * Who a login by an unknown address is checked as: no account can have this name (registration
 * refuses the space), so it costs a dummy hash and fails like a wrong password.
 */
const UNKNOWN_THREEPID_USER = "unknown threepid";

/**
 * The login flows the configuration really offers: `m.login.password` unless password login is
 * off; `m.login.token` (minted by `/login/get_token` and the SSO flow); `m.login.sso` when a
 * browser can sign in (the OAuth pages, or an upstream provider), naming the provider, and with
 * `oauth_aware_preferred` (spec 1.18) when the OAuth API is on, so OAuth-aware clients use it.
 */
export function loginFlows(config: AppDeps["config"]): Record<string, unknown>[] {
  const flows: Record<string, unknown>[] = [];
  if (config.oauth.passwordLogin) flows.push({ type: "m.login.password" });
  // POST /login/get_token is served (whether this user can pass its UIA is another matter,
  // which the spec allows).
  flows.push({ type: "m.login.token", get_login_token: true });
  if (config.oauth.enabled || config.upstreamOidc !== undefined) {
    flows.push({
      type: "m.login.sso",
      ...(config.upstreamOidc !== undefined
        ? { identity_providers: [{ id: config.upstreamOidc.id, name: config.upstreamOidc.name }] }
        : {}),
      ...(config.oauth.enabled ? { oauth_aware_preferred: true } : {}),
    });
  }
  return flows;
}

/** The client's view of a new session, in the spec's snake_case. */
function sessionBody(issued: IssuedSession, serverName: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    user_id: issued.userId,
    access_token: issued.accessToken,
    device_id: issued.deviceId,
    // Deprecated in the spec but still read by some older clients.
    home_server: serverName,
  };
  if (issued.refreshToken !== undefined) {
    body.refresh_token = issued.refreshToken;
    body.expires_in_ms = issued.expiresInMs;
  }
  return body;
}

/** The registration flows the server's mode offers. */
function registrationFlows(
  deps: AppDeps,
): { flows: UiaFlow[]; stages: Record<string, UiaStageHandler> } {
  const token = deps.config.registrationToken;
  if (deps.config.registration === "token" && token !== undefined) {
    return {
      flows: [{ stages: ["m.login.registration_token"] }],
      stages: { "m.login.registration_token": registrationTokenStage(token) },
    };
  }
  // With email configured, an address validated by mail is a way to register too.
  if (deps.threepids.validation.canValidateEmail) {
    return {
      flows: [{ stages: ["m.login.dummy"] }, { stages: [EMAIL_IDENTITY_STAGE] }],
      stages: {
        "m.login.dummy": dummyStage,
        [EMAIL_IDENTITY_STAGE]: emailIdentityStage(deps.threepids.validation, deps.threepids),
      },
    };
  }
  return { flows: [{ stages: ["m.login.dummy"] }], stages: { "m.login.dummy": dummyStage } };
}

/** The area's routes: v3 (and r0) plus the v1 login-token and registration-token endpoints. */
export function authArea(deps: AppDeps): ClientArea {
  const { accounts, uia } = deps;
  const registration = new Registration(accounts, uia);
  const serverName = deps.config.serverName;
  const v3 = new Hono<ClientEnv>();
  const v1 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);

  v3.post("/register", rateLimited(deps, "register"), async (c) => {
    const { kind } = readQuery(c, z.object({ kind: z.string().optional() }));
    if (kind === "guest") {
      // Guests need no UIA and are not bound by the registration mode (as in Synapse): only
      // the guest access switch and the registration rate limit stand in the way.
      if (!deps.config.guestAccess) {
        throw new MatrixError("M_GUEST_ACCESS_FORBIDDEN", 403, "Guest access is not enabled");
      }
      // The spec: every body parameter but the display name is ignored for guests.
      const body = await readJsonBody(c, guestRegisterBody, { emptyAsObject: true });
      const guest = await accounts.guests.register(body.initial_device_display_name);
      return c.json(sessionBody(guest, serverName));
    }
    if (kind !== undefined && kind !== "user") {
      throw new MatrixError("M_INVALID_PARAM", 400, "kind must be 'user' or 'guest'");
    }
    if (deps.config.registration === "closed") throw forbidden("Registration is closed");
    const body = await readJsonBody(c, registerBody);
    const registered = await registration.register(body, registrationFlows(deps));
    // An address the email stage proved joins the new account.
    const auth = body.auth as { session?: unknown } | undefined;
    const proven = provenThreepid(
      (await uia.peek(typeof auth === "object" ? auth?.session : undefined, "register"))
        ?.results ?? {},
    );
    if (proven) {
      await deps.threepids.addValidated(registered.userId, { ...proven, addedAt: Date.now() });
    }
    if (registered.accessToken === undefined) {
      return c.json({ user_id: registered.userId, home_server: serverName });
    }
    return c.json(sessionBody(registered as IssuedSession, serverName));
  });

  v3.get("/register/available", async (c) => {
    const { username } = readQuery(c, z.object({ username: z.string() }));
    if (deps.config.registration === "closed") throw forbidden("Registration is closed");
    await accounts.checkAvailable(username.toLowerCase());
    return c.json({ available: true });
  });

  // Each check is a guess at the token: limited per address like registration itself.
  v1.get(
    "/register/m.login.registration_token/validity",
    rateLimited(deps, "registration_token_validity"),
    (c) => {
      const { token } = readQuery(c, z.object({ token: z.string() }));
      if (deps.config.registration !== "token") {
        throw forbidden("Registration tokens are not used on this server");
      }
      return c.json({ valid: sameSecret(token, deps.config.registrationToken ?? "") });
    },
  );

  const flows = loginFlows(deps.config);
  v3.get("/login", (c) => c.json({ flows }));

  v3.post("/login", rateLimited(deps, "login"), async (c) => {
    const body = await readJsonBody(c, loginBody);
    const options = {
      deviceId: body.device_id,
      displayName: body.initial_device_display_name,
      refreshToken: body.refresh_token,
    };
    let issued: IssuedSession;
    if (body.type === "m.login.password" && !deps.config.oauth.passwordLogin) {
      // Not offered (TESSERA_PASSWORD_LOGIN=off): the spec's answer for a login type the
      // server does not support, and no password is checked.
      throw new MatrixError("M_UNKNOWN", 400, "Password login is disabled on this server");
    }
    if (body.type === "m.login.password") {
      // An email address (or phone number) on an account names its owner.
      const threepid = thirdPartyLoginIdentifier(body as Record<string, unknown>);
      const user = threepid
        ? await deps.threepids.ownerOf(threepid.medium, threepid.address) ?? UNKNOWN_THREEPID_USER
        : identifiedUser(body as Record<string, unknown>);
      if (user === undefined) throw new MatrixError("M_MISSING_PARAM", 400, "Missing 'identifier'");
      if (body.password === undefined) {
        throw new MatrixError("M_MISSING_PARAM", 400, "Missing 'password'");
      }
      issued = await accounts.loginWithPassword(user, body.password, options);
    } else if (body.type === "m.login.token") {
      if (body.token === undefined) {
        throw new MatrixError("M_MISSING_PARAM", 400, "Missing 'token'");
      }
      issued = await accounts.loginWithToken(body.token, options);
    } else {
      throw new MatrixError("M_UNKNOWN", 400, `Unsupported login type ${body.type}`);
    }
    return c.json(sessionBody(issued, serverName));
  });

  v1.post("/login/get_token", session, async (c) => {
    const { userId } = c.get("session");
    const body = await readJsonBody(c, z.object({ auth: authDict }), { emptyAsObject: true });
    await uia.authenticate({
      action: "get_login_token",
      userId,
      auth: body.auth,
      ...reauthenticationFlows(accounts, userId, { sso: deps.upstreamSignIn !== undefined }),
    });
    const { token, expiresInMs } = await accounts.createLoginToken(userId);
    return c.json({ login_token: token, expires_in_ms: expiresInMs });
  });

  v3.post("/refresh", async (c) => {
    const body = await readJsonBody(c, z.object({ refresh_token: z.string() }));
    const issued = await accounts.refresh(body.refresh_token);
    return c.json({
      access_token: issued.accessToken,
      refresh_token: issued.refreshToken,
      expires_in_ms: issued.expiresInMs,
    });
  });

  v3.post("/logout", session, async (c) => {
    await accounts.logout(c.get("session"));
    return c.json({});
  });

  v3.post("/logout/all", session, async (c) => {
    await accounts.logoutAll(c.get("session").userId);
    return c.json({});
  });

  v3.get("/account/whoami", session, (c) => {
    const { userId, deviceId, isGuest } = c.get("session");
    return c.json({ user_id: userId, device_id: deviceId, is_guest: isGuest === true });
  });

  return { v3: v3 as unknown as Hono, v1: v1 as unknown as Hono };
}
