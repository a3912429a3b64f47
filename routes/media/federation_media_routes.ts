/**
 * The federation media endpoints (v1.11): `GET /_matrix/federation/v1/media/download/{mediaId}`
 * and `.../thumbnail/{mediaId}`, for other servers reading our own users' media. The caller is a
 * server authenticated with X-Matrix (the federation API's middleware and `serverAuth` here);
 * the answer is `multipart/mixed`, a JSON part (`{}`) then the bytes with their type and
 * disposition, streamed from the store. Only media uploaded here is served: cached copies of
 * other servers' media are theirs to serve.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { notFound } from "../../domain/errors.ts";
import type { OpenedMedia } from "../../domain/media/media_service.ts";
import { randomBoundary, writeMultipart } from "../../domain/media/multipart.ts";
import type { AppDeps } from "../deps.ts";
import { serverAuth } from "../federation/server_auth.ts";
import { readQuery } from "../json_body.ts";
import { contentDisposition, MEDIA_CSP, servedContentType } from "./media_headers.ts";
import { mediaIdParam, mediaTimeoutMs } from "./upload_routes.ts";

const encoder = new TextEncoder();

// A positive whole number of pixels (the service maps it onto the spec's sizes).
const dimension = z.string().regex(/^\d{1,9}$/, "must be a positive integer").transform(Number)
  .refine((n) => n > 0, "must be positive");
const flag = z.enum(["true", "false"]).transform((v) => v === "true");
const thumbnailQuery = z.object({
  width: dimension,
  height: dimension,
  // Optional in the spec; Synapse scales when it is left out.
  method: z.enum(["crop", "scale"]).default("scale"),
  animated: flag.default(false),
});

/**
 * The multipart answer for `opened`: metadata `{}`, then the media with its safety-relevant
 * type and disposition (a receiving server passes them on to its clients).
 */
export function multipartMediaResponse(opened: OpenedMedia): Response {
  const boundary = randomBoundary();
  const { meta } = opened;
  const body = writeMultipart(boundary, [
    { headers: [["Content-Type", "application/json"]], body: encoder.encode("{}") },
    {
      headers: [
        ["Content-Type", servedContentType(meta.contentType)],
        ["Content-Disposition", contentDisposition(meta.contentType, meta.fileName)],
      ],
      body: opened.stream,
    },
  ]);
  return new Response(body, {
    status: 200,
    headers: {
      "Content-Type": `multipart/mixed; boundary=${boundary}`,
      "Content-Security-Policy": MEDIA_CSP,
      "X-Content-Type-Options": "nosniff",
      "Cross-Origin-Resource-Policy": "cross-origin",
    },
  });
}

/** The federation media routes. */
export function federationMediaApp(deps: AppDeps): Hono {
  const app = new Hono();
  const auth = serverAuth(deps);
  const v1 = "/_matrix/federation/v1/media";

  app.get(`${v1}/download/:mediaId`, auth, async (c: Context) => {
    const mediaId = mediaIdParam(c);
    const timeoutMs = mediaTimeoutMs(c);
    const us = deps.config.serverName;
    // Our own media only, never fetched from elsewhere (the spec's loop guard); an ID reserved
    // by `/create` is waited for up to `timeout_ms` (504 M_NOT_YET_UPLOADED after).
    const opened = await deps.media.open(us, mediaId, { allowRemote: false }) ??
      await deps.media.awaitUpload(us, mediaId, timeoutMs, c.req.raw.signal);
    if (opened === null) throw notFound("Unknown media");
    return multipartMediaResponse(opened);
  });

  // Rendered here from our own original (stored once, as for our clients); 400 for media that
  // is not an image, 413 for one past the decode bounds.
  app.get(`${v1}/thumbnail/:mediaId`, auth, async (c: Context) => {
    const mediaId = mediaIdParam(c);
    const query = readQuery(c, thumbnailQuery);
    const timeoutMs = mediaTimeoutMs(c);
    const us = deps.config.serverName;
    const request = {
      server: us,
      mediaId,
      width: query.width,
      height: query.height,
      method: query.method,
      animated: query.animated,
      allowRemote: false,
    };
    if (await deps.media.meta(us, mediaId) === null) {
      // Reserved by `/create` but not uploaded yet: wait for it as a download does.
      const uploaded = await deps.media.awaitUpload(us, mediaId, timeoutMs, c.req.raw.signal);
      if (uploaded === null) throw notFound("Unknown media");
      await uploaded.stream.cancel();
    }
    return multipartMediaResponse(await deps.thumbnails.thumbnail(request));
  });

  return app;
}
