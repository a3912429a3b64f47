/**
 * Third-party identifiers (spec: "Adding Account Administrative Contact Information" and the
 * `requestToken` endpoints of registration and password reset): email validation by this
 * server (the mailed link lands on `.../email/submit_token`), the account's identifiers, and
 * binding them at identity servers. Phone numbers need an SMS sender, which this server does
 * not have: their `requestToken` answers M_THREEPID_MEDIUM_NOT_SUPPORTED.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { MatrixError } from "../../domain/errors.ts";
import { reauthenticationFlows } from "../../domain/accounts/uia_stages.ts";
import {
  canonicalEmail,
  checkClientSecret,
  SUBMIT_TOKEN_PATHS,
  type ValidationPurpose,
} from "../../domain/threepid/threepid_validation.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { clientAddress, rateLimited, takeRateLimit } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const secret = z.string().max(255);
const emailRequestBody = z.object({
  client_secret: secret,
  email: z.string().max(320),
  send_attempt: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  next_link: z.string().max(2048).optional(),
  id_server: z.string().max(255).optional(),
  id_access_token: z.string().max(4096).optional(),
});
const msisdnRequestBody = z.object({
  client_secret: secret,
  country: z.string().max(8),
  phone_number: z.string().max(64),
  send_attempt: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  next_link: z.string().max(2048).optional(),
  id_server: z.string().max(255).optional(),
  id_access_token: z.string().max(4096).optional(),
});
const submitBody = z.object({
  sid: z.string().max(255),
  client_secret: secret,
  token: z.string().max(255),
});
const medium = z.string().max(32);
const address = z.string().max(512);
const idServer = z.string().max(255);

/** The third-party identifier area: v3 (and r0) and the unstable paths clients still call. */
export function threepidArea(deps: AppDeps): ClientArea {
  const { threepids, uia, accounts } = deps;
  const app = new Hono<ClientEnv>();
  const auth = requireSession(deps.sessions);
  const user = (c: { get(key: "session"): { userId: string } }) => c.get("session").userId;

  /** Each request mails someone: limited per client and per address. */
  const limitMail = async (c: Context, email: string) => {
    const from = clientAddress(c);
    if (from !== undefined) await takeRateLimit(deps, c, "threepid_validation", `addr:${from}`);
    await takeRateLimit(deps, c, "threepid_validation", `email:${email}`);
  };

  const requestEmail = (purpose: ValidationPurpose) => async (c: Context) => {
    const body = await readJsonBody(c, emailRequestBody);
    checkClientSecret(body.client_secret);
    const email = canonicalEmail(body.email);
    if (!threepids.validation.canValidateEmail) {
      throw new MatrixError(
        "M_THREEPID_MEDIUM_NOT_SUPPORTED",
        400,
        "Email is not configured on this server",
      );
    }
    const owner = await threepids.ownerOf("email", email);
    if (purpose === "password_reset" && owner === null) {
      throw new MatrixError("M_THREEPID_NOT_FOUND", 400, "Email not found");
    }
    if (purpose !== "password_reset" && owner !== null) {
      throw new MatrixError("M_THREEPID_IN_USE", 400, "Email is already in use");
    }
    await limitMail(c, email);
    const sid = await threepids.validation.requestEmailToken({
      purpose,
      email,
      clientSecret: body.client_secret,
      sendAttempt: body.send_attempt,
      nextLink: body.next_link,
    });
    return c.json({ sid });
  };

  const requestMsisdn = async (c: Context) => {
    const body = await readJsonBody(c, msisdnRequestBody);
    checkClientSecret(body.client_secret);
    throw new MatrixError(
      "M_THREEPID_MEDIUM_NOT_SUPPORTED",
      400,
      "Phone numbers are not supported: this server cannot send SMS",
    );
  };

  app.post("/register/email/requestToken", (c) => {
    if (deps.config.registration === "closed") {
      throw new MatrixError("M_FORBIDDEN", 403, "Registration is closed");
    }
    return requestEmail("register")(c);
  });
  app.post("/account/3pid/email/requestToken", requestEmail("add_threepid"));
  app.post("/account/password/email/requestToken", requestEmail("password_reset"));
  app.post("/register/msisdn/requestToken", requestMsisdn);
  app.post("/account/3pid/msisdn/requestToken", requestMsisdn);
  app.post("/account/password/msisdn/requestToken", requestMsisdn);

  app.get("/account/3pid", auth, async (c) => c.json({ threepids: await threepids.list(user(c)) }));

  // Deprecated, but SyTest and older clients use it: a session this server validated adds the
  // address to the account (as Synapse does); otherwise the spec's reading, a bind at the
  // identity server the credentials name.
  app.post("/account/3pid", auth, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({
        three_pid_creds: z.object({
          client_secret: secret,
          sid: z.string().max(255),
          id_server: idServer.optional(),
          id_access_token: z.string().max(4096).optional(),
        }).optional(),
        threePidCreds: z.unknown().optional(),
      }),
    );
    const creds = body.three_pid_creds ??
      z.object({
        client_secret: secret,
        sid: z.string().max(255),
        id_server: idServer.optional(),
        id_access_token: z.string().max(4096).optional(),
      }).optional().parse(body.threePidCreds);
    if (creds === undefined) {
      throw new MatrixError("M_MISSING_PARAM", 400, "Missing param three_pid_creds");
    }
    checkClientSecret(creds.client_secret);
    if (await threepids.hasValidatedSession(creds.sid, creds.client_secret)) {
      await threepids.addFromSession(user(c), creds.sid, creds.client_secret);
    } else if (creds.id_server !== undefined && creds.id_access_token !== undefined) {
      await threepids.bind(user(c), {
        idServer: creds.id_server,
        idAccessToken: creds.id_access_token,
        sid: creds.sid,
        clientSecret: creds.client_secret,
      });
    } else {
      throw new MatrixError("M_THREEPID_AUTH_FAILED", 400, "No validated 3pid session found");
    }
    return c.json({});
  });

  app.post("/account/3pid/add", auth, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({ auth: z.unknown().optional(), client_secret: secret, sid: z.string().max(255) }),
    );
    checkClientSecret(body.client_secret);
    const userId = user(c);
    await uia.authenticate({
      action: "add_threepid",
      userId,
      auth: body.auth,
      ...reauthenticationFlows(accounts, userId, { sso: deps.upstreamSignIn !== undefined }),
    });
    await threepids.addFromSession(userId, body.sid, body.client_secret);
    return c.json({});
  });

  app.post("/account/3pid/bind", auth, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({
        client_secret: secret,
        id_server: idServer,
        id_access_token: z.string().max(4096),
        sid: z.string().max(255),
      }),
    );
    await threepids.bind(user(c), {
      idServer: body.id_server,
      idAccessToken: body.id_access_token,
      sid: body.sid,
      clientSecret: body.client_secret,
    });
    return c.json({});
  });

  app.post("/account/3pid/unbind", auth, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({ medium, address, id_server: idServer.optional() }),
    );
    const unbound = await threepids.unbind(user(c), {
      medium: body.medium,
      address: body.address,
      idServer: body.id_server,
    });
    return c.json({ id_server_unbind_result: unbound ? "success" : "no-support" });
  });

  app.post("/account/3pid/delete", auth, rateLimited(deps, "user_write"), async (c) => {
    const body = await readJsonBody(
      c,
      z.object({ medium, address, id_server: idServer.optional() }),
    );
    const unbound = await threepids.delete(user(c), body.medium, body.address, body.id_server);
    return c.json({ id_server_unbind_result: unbound ? "success" : "no-support" });
  });

  // The links in validation mails (GET, a page for a person) and the submit_url form (POST,
  // JSON for a client); under unstable paths as Synapse serves them, since the spec leaves the
  // link to the server.
  const unstable = new Hono<ClientEnv>();
  for (const path of Object.values(SUBMIT_TOKEN_PATHS)) {
    const relative = path.replace("/_matrix/client/unstable", "");
    unstable.get(relative, async (c) => {
      const query = readQuery(c, submitBody);
      try {
        const { nextLink } = await threepids.validation.submitToken(
          query.sid,
          query.client_secret,
          query.token,
        );
        if (nextLink !== undefined) return c.redirect(nextLink, 302);
        return c.html(page("Your email address has been validated. You can return to your app."));
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        return c.html(page(`This link cannot be used: ${escapeHtml(error.message)}.`), 400);
      }
    });
    unstable.post(relative, async (c) => {
      const body = await readJsonBody(c, submitBody);
      await threepids.validation.submitToken(body.sid, body.client_secret, body.token);
      return c.json({ success: true });
    });
  }
  unstable.route("/", app);

  return { v3: app as unknown as Hono, unstable: unstable as unknown as Hono };
}

function page(message: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Email validation</title>` +
    `</head><body><p>${message}</p></body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
