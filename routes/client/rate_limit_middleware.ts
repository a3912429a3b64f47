/**
 * Rate limiting at the edge: `rateLimited(deps, action)` takes a token from the bucket of the
 * authenticated user (mount it after `requireSession`) or, for anonymous requests such as login
 * and register, of the client's address. Over the limit: 429 M_LIMIT_EXCEEDED.
 */
import type { Context, MiddlewareHandler } from "hono";
import { MatrixError } from "../../domain/errors.ts";
import type { RateLimitedAction } from "../../domain/rate_limiter.ts";
import type { Session } from "../../domain/session.ts";
import type { AppDeps } from "../deps.ts";

/**
 * The client's address from Deno.serve's connection info (Hono passes it as `c.env`); undefined
 * when the app is called without one (in-process tests). Forwarded-for headers are not trusted:
 * anyone can set them.
 */
export function clientAddress(c: Context): string | undefined {
  const env = c.env as { remoteAddr?: { hostname?: unknown } } | undefined;
  const hostname = env?.remoteAddr?.hostname;
  return typeof hostname === "string" ? hostname : undefined;
}

/** Middleware refusing requests over the action's rate limit (off with TESSERA_RATE_LIMITS=off). */
export function rateLimited(deps: AppDeps, action: RateLimitedAction): MiddlewareHandler {
  return async (c, next) => {
    const session = c.get("session") as Session | undefined;
    const address = clientAddress(c);
    // Without a user or an address there is nothing fair to key on; let it through.
    const key = session ? `user:${session.userId}` : address ? `addr:${address}` : undefined;
    if (key !== undefined) await takeRateLimit(deps, c, action, key);
    await next();
  };
}

/**
 * Take a token of `action` for the client's address, for anonymous steps that write to KV (the
 * sign-in pages, parked authorization requests, upstream sign-in flows); requests without an
 * address (in-process tests) are not limited.
 */
export async function takeAddressRateLimit(
  deps: AppDeps,
  c: Context,
  action: RateLimitedAction,
): Promise<void> {
  const address = clientAddress(c);
  if (address !== undefined) await takeRateLimit(deps, c, action, `addr:${address}`);
}

/**
 * Take a token of `action` for `key` (e.g. `user:@invitee:server` when the limited party is named
 * in the body, not the one asking); 429 M_LIMIT_EXCEEDED when there is none. Rate limits off:
 * nothing. The limit holds across every process on the database (domain/shared_rate_counters.ts),
 * so it may read KV; callers must await it.
 */
export async function takeRateLimit(
  deps: AppDeps,
  c: Context,
  action: RateLimitedAction,
  key: string,
): Promise<void> {
  if (!deps.config.rateLimits) return;
  const result = await deps.rateLimiter.take(action, key);
  if (!result.allowed) {
    c.header("Retry-After", String(Math.ceil(result.retryAfterMs / 1000)));
    throw new MatrixError("M_LIMIT_EXCEEDED", 429, "Too many requests", {
      retry_after_ms: result.retryAfterMs,
    });
  }
}
