/**
 * Cross-signing and key queries (spec: "End-to-end encryption"): POST /keys/device_signing/upload
 * (user-interactive auth once a master key exists), POST /keys/signatures/upload and
 * POST /keys/query.
 */
import { Hono } from "hono";
import { z } from "zod";
import { invalidParam } from "../../domain/errors.ts";
import { isValidDeviceId, isValidUserId } from "../../domain/protocol/identifiers.ts";
import { reauthenticationFlows } from "../../domain/accounts/uia_stages.ts";
import {
  crossSigningResetUrl,
  OAUTH_UIA_STAGE,
  oauthApprovalStage,
} from "../../domain/oauth/cross_signing_reset.ts";
import { boundedKeyQueryTimeout } from "../../domain/e2ee/key_query.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** Most keys one /keys/signatures/upload may carry (each may become a write in one commit). */
export const MAX_SIGNATURE_UPLOAD_KEYS = 500;
/** Most users one /keys/query may name, and device IDs per user. */
export const MAX_KEY_QUERY_USERS = 5000;
const MAX_KEY_QUERY_DEVICES = 1000;

const keyObject = z.record(z.string(), z.unknown()).nullable().optional();

const deviceSigningBody = z.object({
  master_key: keyObject,
  self_signing_key: keyObject,
  user_signing_key: keyObject,
  auth: z.unknown().optional(),
});

const signaturesBody = z.record(z.string(), z.record(z.string(), z.unknown()));

// IDs are checked here: a device ID over KV's key size would otherwise fail deep in the store.
const queriedUserId = z.string().refine(isValidUserId, "must be a valid user ID");
const queriedDeviceId = z.string().refine(isValidDeviceId, "must be a valid device ID");

const queryBody = z.object({
  device_keys: z.record(queriedUserId, z.array(queriedDeviceId).max(MAX_KEY_QUERY_DEVICES)),
  timeout: z.number().optional(),
});

/** The cross-signing and key query endpoints. */
export function crossSigningArea(deps: AppDeps): ClientArea {
  const { accounts, uia, crossSigning } = deps;
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);

  v3.post("/keys/device_signing/upload", session, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(c, deviceSigningBody);
    const session = c.get("session");
    const { userId } = session;
    await crossSigning.uploadSigningKeys(
      userId,
      {
        master: body.master_key ?? undefined,
        self_signing: body.self_signing_key ?? undefined,
        user_signing: body.user_signing_key ?? undefined,
      },
      async () => {
        // An OAuth session has no password to prove: the user approves the reset in the
        // account page instead (spec v1.17 `m.oauth`), while OAuth is served.
        if (session.oauth && deps.config.oauth.enabled) {
          const url = crossSigningResetUrl(deps.config);
          await uia.authenticate({
            action: "device_signing_upload",
            userId,
            auth: withOAuthStage(body.auth),
            flows: [{ stages: [OAUTH_UIA_STAGE] }],
            params: { [OAUTH_UIA_STAGE]: { url } },
            stages: {
              [OAUTH_UIA_STAGE]: oauthApprovalStage(deps.crossSigningResetApprovals, userId, url),
            },
          });
          return;
        }
        await uia.authenticate({
          action: "device_signing_upload",
          userId,
          auth: body.auth,
          ...reauthenticationFlows(accounts, userId, { sso: deps.upstreamSignIn !== undefined }),
        });
      },
    );
    return c.json({});
  });

  v3.post("/keys/signatures/upload", session, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(c, signaturesBody);
    const count = Object.values(body).reduce((n, byKey) => n + Object.keys(byKey).length, 0);
    if (count > MAX_SIGNATURE_UPLOAD_KEYS) {
      throw invalidParam(`At most ${MAX_SIGNATURE_UPLOAD_KEYS} keys may be signed at once`);
    }
    return c.json(await crossSigning.uploadSignatures(c.get("session").userId, body));
  });

  v3.post("/keys/query", session, async (c) => {
    const body = await readJsonBody(c, queryBody);
    if (Object.keys(body.device_keys).length > MAX_KEY_QUERY_USERS) {
      throw invalidParam(`At most ${MAX_KEY_QUERY_USERS} users may be queried at once`);
    }
    const timeout = boundedKeyQueryTimeout(body.timeout);
    return c.json(
      await crossSigning.queryKeys(c.get("session").userId, body.device_keys, timeout),
    );
  });

  return { v3: v3 as unknown as Hono };
}

/**
 * The spec has the client retry with `{type: "m.oauth", session}`; a retry carrying only the
 * session (as for the fallback stages) means the same, so it is read as that stage.
 */
function withOAuthStage(auth: unknown): unknown {
  if (typeof auth !== "object" || auth === null || Array.isArray(auth)) return auth;
  const dict = auth as Record<string, unknown>;
  return dict.type === undefined && dict.session !== undefined
    ? { ...dict, type: OAUTH_UIA_STAGE }
    : auth;
}
