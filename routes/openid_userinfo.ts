/**
 * `GET /_matrix/federation/v1/openid/userinfo` (spec: Server-Server "OpenID"): a third party
 * trades a user's OpenID token for the user's ID. It sits under the federation prefix but needs
 * no server signature: it completes the Client-Server `request_token` flow.
 */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";

/** Sub-app serving the userinfo endpoint. */
export function openIdUserInfoApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/_matrix/federation/v1/openid/userinfo", async (c) => {
    return c.json(await deps.openIdTokens.userInfo(c.req.query("access_token")));
  });
  return app;
}
