/**
 * Thumbnails: the authenticated `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
 * and the unauthenticated legacy `/_matrix/media/{v3,r0,v1}/thumbnail/...` (frozen by the spec
 * in v1.11; served per TESSERA_MEDIA_LEGACY like the legacy downloads).
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { invalidParam, MatrixError, missingParam, notFound } from "../../domain/errors.ts";
import type { OpenedMedia } from "../../domain/media/media_service.ts";
import type { ThumbnailRequest } from "../../domain/media/thumbnail_service.ts";
import type { AppDeps } from "../deps.ts";
import { type ClientEnv, requireSession } from "../client/session_middleware.ts";
import { mediaIdParam, mediaResponse, mediaServerParam, mediaTimeoutMs } from "./upload_routes.ts";

// A positive whole number of pixels; anything past the largest size maps onto it anyway.
const dimension = z.string().regex(/^\d{1,9}$/).transform(Number).refine((n) => n > 0);
const method = z.enum(["crop", "scale"]);
const flag = z.enum(["true", "false"]).transform((v) => v === "true");

function parseQuery<T>(c: Context, name: string, schema: z.ZodType<T>, fallback?: T): T {
  const raw = c.req.query(name);
  if (raw === undefined) {
    if (fallback === undefined) throw missingParam(`Missing ${name} parameter`);
    return fallback;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw invalidParam(`Invalid ${name} parameter`);
  return parsed.data;
}

/** The request's path and query, validated (path first, so a bad media ID is never read). */
function thumbnailRequest(c: Context): ThumbnailRequest {
  const server = mediaServerParam(c);
  const mediaId = mediaIdParam(c);
  return {
    server,
    mediaId,
    width: parseQuery(c, "width", dimension),
    height: parseQuery(c, "height", dimension),
    // Synapse's default when the (optional) method is left out.
    method: parseQuery(c, "method", method, "scale"),
    animated: parseQuery(c, "animated", flag, false),
    allowRemote: parseQuery(c, "allow_remote", flag, true),
  };
}

/** The spec (v1.12) wants thumbnails `inline` with a file name such as `thumbnail.png`. */
function thumbnailResponse(opened: OpenedMedia): Response {
  const extension = opened.meta.contentType.split("/")[1]?.replace("jpeg", "jpg") ?? "bin";
  return mediaResponse(opened, `thumbnail.${extension}`);
}

/** The thumbnail routes. */
export function mediaThumbnailApp(deps: AppDeps): Hono {
  const app = new Hono<ClientEnv>();
  const auth = requireSession(deps.sessions);

  app.get("/_matrix/client/v1/media/thumbnail/:serverName/:mediaId", auth, async (c) => {
    const request = thumbnailRequest(c);
    const timeoutMs = mediaTimeoutMs(c);
    try {
      return thumbnailResponse(await deps.thumbnails.thumbnail(request));
    } catch (e) {
      // One of our IDs reserved by `/create` whose bytes are not here yet: wait up to
      // `timeout_ms` for them (504 M_NOT_YET_UPLOADED after), then thumbnail them.
      if (!(e instanceof MatrixError) || e.errcode !== "M_NOT_FOUND") throw e;
      if (request.server !== deps.config.serverName) throw e;
      const uploaded = await deps.media.awaitUpload(
        request.server,
        request.mediaId,
        timeoutMs,
        c.req.raw.signal,
      );
      if (uploaded === null) throw e;
      await uploaded.stream.cancel();
      return thumbnailResponse(await deps.thumbnails.thumbnail(request));
    }
  });

  // Legacy reads: `off` serves none, `on` all, `frozen` only thumbnails of media stored before
  // the freeze (and never fetches remote media, which would be new).
  const legacy = async (c: Context) => {
    const mode = deps.config.media.legacy;
    if (mode === "off") throw notFound("Unknown media");
    const request = thumbnailRequest(c);
    if (mode === "frozen") {
      const meta = await deps.media.meta(request.server, request.mediaId);
      if (meta === null || !await deps.media.legacyReadable(meta)) {
        throw notFound("Unknown media");
      }
      request.allowRemote = false;
    }
    return thumbnailResponse(await deps.thumbnails.thumbnail(request));
  };
  for (const version of ["v3", "r0", "v1"]) {
    app.get(`/_matrix/media/${version}/thumbnail/:serverName/:mediaId`, legacy);
  }
  return app as unknown as Hono;
}
