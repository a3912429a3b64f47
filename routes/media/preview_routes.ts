/**
 * URL previews: `GET /_matrix/client/v1/media/preview_url` and the deprecated
 * `/_matrix/media/{v3,r0,v1}/preview_url` (authenticated like the new one; not served when
 * TESSERA_MEDIA_LEGACY is `off`). With TESSERA_URL_PREVIEWS off neither path is served (404
 * M_UNRECOGNIZED), as Synapse does without url_preview_enabled.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { MatrixError, missingParam, unrecognized } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { type ClientEnv, requireSession } from "../client/session_middleware.ts";
import { rateLimited } from "../client/rate_limit_middleware.ts";

// Milliseconds since the epoch: up to 15 digits, digits only (no `1e3`, no empty `ts=`).
const tsQuery = z.string().regex(/^\d{1,15}$/).transform(Number);

/** The preview_url routes; `deps.urlPreviews` absent means previews are off. */
export function mediaPreviewApp(deps: AppDeps): Hono<ClientEnv> {
  const app = new Hono<ClientEnv>();
  const previews = deps.urlPreviews;
  if (previews === undefined) return app;
  const auth = requireSession(deps.sessions);
  const preview = rateLimited(deps, "url_preview");

  const handler = async (c: Context<ClientEnv>) => {
    const url = c.req.query("url");
    if (url === undefined || url === "") throw missingParam("Missing url parameter");
    const rawTs = c.req.query("ts");
    let ts: number | undefined;
    if (rawTs !== undefined) {
      const parsed = tsQuery.safeParse(rawTs);
      if (!parsed.success) {
        throw new MatrixError("M_INVALID_PARAM", 400, "ts must be milliseconds since the epoch");
      }
      ts = parsed.data;
    }
    const og = await previews.preview(c.get("session").userId, url, ts);
    return c.json(og);
  };

  app.get("/_matrix/client/v1/media/preview_url", auth, preview, handler);
  for (const version of ["v3", "r0", "v1"]) {
    app.get(
      `/_matrix/media/${version}/preview_url`,
      (_c, next) => {
        if (deps.config.media.legacy === "off") throw unrecognized(404);
        return next();
      },
      auth,
      preview,
      handler,
    );
  }
  return app;
}
