/**
 * The user-interactive auth stages accounts offer: m.login.dummy, m.login.password (proving the
 * authenticated user's own password), m.login.sso (a browser sign-in on the fallback page) and
 * m.login.registration_token.
 */
import { badJson, forbidden, MatrixError } from "../errors.ts";
import type { AccountService } from "./account_service.ts";
import { type UiaFlow, UiaRefusal, type UiaStageHandler } from "./user_interactive_auth.ts";

/** The stage completed in a browser, on the fallback page (spec: "Single Sign-On"). */
export const SSO_STAGE = "m.login.sso";

/**
 * m.login.sso: passes only once the session's user confirmed on the fallback page
 * (`/auth/m.login.sso/fallback/web`, after signing in there); a client that submits the stage
 * before that gets the challenge again.
 */
export const ssoStage: UiaStageHandler = (_auth, session) =>
  session.completed.includes(SSO_STAGE) ? Promise.resolve() : Promise.reject(
    new MatrixError("M_UNAUTHORIZED", 401, "Confirm your identity in the browser first"),
  );

/**
 * The flows that re-authenticate a signed-in user before a sensitive request: the password,
 * and with `sso` (an upstream provider users may have signed up through, so without a
 * password) a browser sign-in through the fallback page.
 */
export function reauthenticationFlows(
  accounts: AccountService,
  userId: string,
  options: { sso: boolean },
): { flows: UiaFlow[]; stages: Record<string, UiaStageHandler> } {
  const flows: UiaFlow[] = [{ stages: ["m.login.password"] }];
  const stages: Record<string, UiaStageHandler> = {
    "m.login.password": passwordStage(accounts, userId),
  };
  if (options.sso) {
    flows.push({ stages: [SSO_STAGE] });
    stages[SSO_STAGE] = ssoStage;
  }
  return { flows, stages };
}

/** m.login.dummy: always passes; it only lets a client complete the flow. */
export const dummyStage: UiaStageHandler = () => Promise.resolve();

/** The user a login-style `identifier` (or legacy `user`) names, or undefined. */
export function identifiedUser(dict: Record<string, unknown>): string | undefined {
  const identifier = dict.identifier;
  if (identifier !== undefined) {
    if (typeof identifier !== "object" || identifier === null) {
      throw badJson("'identifier' must be an object");
    }
    const { type, user } = identifier as Record<string, unknown>;
    if (type !== "m.id.user") {
      throw new MatrixError("M_UNKNOWN", 400, `Unsupported identifier type ${String(type)}`);
    }
    if (typeof user !== "string") throw badJson("'identifier.user' must be a string");
    return user;
  }
  if (dict.user !== undefined) {
    if (typeof dict.user !== "string") throw badJson("'user' must be a string");
    return dict.user;
  }
  return undefined;
}

/** m.login.password for an authenticated user: the identifier, if given, must be that user. */
export function passwordStage(accounts: AccountService, userId: string): UiaStageHandler {
  return async (auth) => {
    const user = identifiedUser(auth);
    // Someone else's credentials prove nothing about this session: the request is refused
    // outright (403, as Synapse does), not answered with another challenge.
    if (user !== undefined && userIdOrNull(accounts, user) !== userId) {
      throw new UiaRefusal("M_FORBIDDEN", 403, "Authenticate as the user making the request");
    }
    if (typeof auth.password !== "string") throw badJson("'auth.password' must be a string");
    await accounts.checkPassword(userId, auth.password);
  };
}

/** The local user ID an identifier names, or null when it names none. */
function userIdOrNull(accounts: AccountService, user: string): string | null {
  try {
    return accounts.userIdForLogin(user);
  } catch {
    return null;
  }
}

/** m.login.registration_token: the configured token, compared in constant time. */
export function registrationTokenStage(expected: string): UiaStageHandler {
  return (auth) => {
    if (typeof auth.token !== "string") {
      return Promise.reject(badJson("'auth.token' must be a string"));
    }
    if (!sameSecret(auth.token, expected)) {
      return Promise.reject(forbidden("Invalid registration token"));
    }
    return Promise.resolve();
  };
}

/** Compare secrets without an early exit on the first differing character. */
export function sameSecret(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return diff === 0;
}
