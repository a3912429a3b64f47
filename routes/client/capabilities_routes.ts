/** `GET /capabilities`: what this server lets the user change. */
import { Hono } from "hono";
import {
  DEFAULT_ROOM_VERSION,
  supportedRoomVersions,
} from "../../domain/protocol/room_versions.ts";
import type { AppDeps } from "../deps.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The capabilities area. */
export function capabilitiesArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const available = Object.fromEntries(supportedRoomVersions().map((v) => [v.id, "stable"]));

  v3.get("/capabilities", requireSession(deps.sessions), (c) =>
    c.json({
      capabilities: {
        // With password login off no sign-in takes a password, so none can be set (Synapse's
        // can_change_password: password login enabled); POST /account/password refuses too.
        "m.change_password": { enabled: deps.config.oauth.passwordLogin },
        "m.room_versions": {
          default: deps.config.defaultRoomVersion ?? DEFAULT_ROOM_VERSION,
          available,
        },
        "m.set_displayname": { enabled: true },
        "m.set_avatar_url": { enabled: true },
        // Adding an address needs a validation mail: offered when SMTP is configured.
        "m.3pid_changes": { enabled: deps.threepids.validation.canValidateEmail },
        "m.get_login_token": { enabled: true },
        "m.profile_fields": { enabled: true },
        // The spec: omitted altogether for users who can neither suspend nor lock.
        ...(deps.moderation.isAdmin(c.get("session").userId)
          ? { "m.account_moderation": { suspend: true, lock: true } }
          : {}),
      },
    }));

  return { v3: v3 as unknown as Hono };
}
