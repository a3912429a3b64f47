/** `GET /voip/turnServer`: TURN credentials when configured, `{}` otherwise. */
import { Hono } from "hono";
import { turnCredentials } from "../../domain/voip/turn_credentials.ts";
import type { AppDeps } from "../deps.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The VoIP area. */
export function voipArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  v3.get("/voip/turnServer", requireSession(deps.sessions), async (c) => {
    const turn = deps.config.turn;
    if (!turn) return c.json({});
    const now = deps.now?.() ?? Date.now();
    return c.json(await turnCredentials(turn, c.get("session").userId, now));
  });
  return { v3: v3 as unknown as Hono };
}
