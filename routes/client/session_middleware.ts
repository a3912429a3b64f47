/** Client authentication: the access token from the Authorization header or `?access_token=`. */
import type { Context, MiddlewareHandler } from "hono";
import { MatrixError } from "../../domain/errors.ts";
import type { Session, SessionResolver } from "../../domain/session.ts";
import { clientAddress } from "./rate_limit_middleware.ts";
import { guestMayRequest } from "./guest_rules.ts";
import {
  clientApiRelativePath,
  suspendedMayRequest,
} from "../../domain/moderation/account_moderation.ts";

/** Hono environment of authenticated client routes: `c.get("session")`. */
export type ClientEnv = { Variables: { session: Session } };

/** The token a request carries, header first (older clients such as matrix-nio use the query). */
export function accessTokenOf(c: Context): string | undefined {
  const header = c.req.header("authorization");
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1] : undefined;
  }
  return c.req.query("access_token") || undefined;
}

/** Middleware that refuses requests without a valid token and stores the session otherwise. */
export function requireSession(resolver: SessionResolver): MiddlewareHandler<ClientEnv> {
  return async (c, next) => {
    const token = accessTokenOf(c);
    if (token === undefined) {
      throw new MatrixError("M_MISSING_TOKEN", 401, "Missing access token");
    }
    const session = await resolver.resolveAccessToken(token);
    if (!session) {
      throw new MatrixError("M_UNKNOWN_TOKEN", 401, "Unknown access token", {
        soft_logout: false,
      });
    }
    checkModeration(session, c.req.method, clientApiRelativePath(c.req.path));
    if (session.isGuest && !guestMayRequest(c.req.method, c.req.url)) {
      throw new MatrixError("M_GUEST_ACCESS_FORBIDDEN", 403, "Guest accounts may not do this");
    }
    c.set("session", session);
    await next();
    // Once per device per few minutes: the last-seen time, address and client the devices list
    // and whois show. Only after a request that succeeded, so a refused one writes nothing.
    if (c.res.status < 400) {
      await resolver.noteActivity?.(session, clientAddress(c), c.req.header("user-agent"));
    }
  };
}

/** Refuse a locked user anything but logging out, and a suspended user the writes it may not do. */
function checkModeration(session: Session, method: string, path: string): void {
  if (session.locked && !/^\/logout(?:\/all)?$/.test(path)) {
    throw new MatrixError("M_USER_LOCKED", 401, "This account has been locked", {
      soft_logout: true,
    });
  }
  if (session.suspended && !suspendedMayRequest(method, path)) {
    throw new MatrixError("M_USER_SUSPENDED", 403, "This account has been suspended");
  }
}
