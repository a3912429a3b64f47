/**
 * The m.login.email.identity stage of user-interactive auth: `threepid_creds` naming a session
 * this server validated (its mail link was followed). The proven address goes into the UIA
 * session's results as `threepid`, for registration to add to the new account and for a
 * password reset to find the account by.
 */
import { badJson, MatrixError } from "../errors.ts";
import { isJsonObject } from "../protocol/json.ts";
import type { UiaStageHandler } from "../accounts/user_interactive_auth.ts";
import type { ThreepidValidation } from "./threepid_validation.ts";
import type { ThreepidMedium } from "../ports/threepid_store.ts";

/** The stage's name in flows. */
export const EMAIL_IDENTITY_STAGE = "m.login.email.identity";

/** What the stage puts in the session's results under `threepid`. */
export interface ProvenThreepid {
  medium: ThreepidMedium;
  address: string;
  validatedAt: number;
}

/**
 * The handler for m.login.email.identity over this server's validation sessions. With `owners`
 * (registration), an address another account already has is refused: M_THREEPID_IN_USE.
 */
export function emailIdentityStage(
  validation: ThreepidValidation,
  owners?: { ownerOf(medium: string, address: string): Promise<string | null> },
): UiaStageHandler {
  return async (auth) => {
    // `threepidCreds` is the r0 spelling some clients still send.
    const creds = auth.threepid_creds ?? auth.threepidCreds;
    if (!isJsonObject(creds)) throw badJson("'auth.threepid_creds' must be an object");
    if (typeof creds.sid !== "string" || typeof creds.client_secret !== "string") {
      throw badJson("'auth.threepid_creds' needs string sid and client_secret");
    }
    const session = await validation.validatedSession(creds.sid, creds.client_secret);
    if (!session || session.medium !== "email") {
      throw new MatrixError("M_UNAUTHORIZED", 401, "The email address has not been validated");
    }
    if (owners && (await owners.ownerOf(session.medium, session.address)) !== null) {
      throw new MatrixError("M_THREEPID_IN_USE", 400, "That address is already in use");
    }
    const threepid: ProvenThreepid = {
      medium: session.medium,
      address: session.address,
      validatedAt: session.validatedAt ?? Date.now(),
    };
    return { threepid };
  };
}

/** The threepid a finished UIA session proved, if its email stage ran. */
export function provenThreepid(results: Record<string, unknown>): ProvenThreepid | undefined {
  const t = results.threepid;
  if (!isJsonObject(t)) return undefined;
  if ((t.medium !== "email" && t.medium !== "msisdn") || typeof t.address !== "string") {
    return undefined;
  }
  return {
    medium: t.medium,
    address: t.address,
    validatedAt: typeof t.validatedAt === "number" ? t.validatedAt : Date.now(),
  };
}
