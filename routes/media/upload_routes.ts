/**
 * Uploads, downloads and configuration of the media repository: `POST /_matrix/media/v3/upload`,
 * the asynchronous `POST /_matrix/media/v1/create` + `PUT /_matrix/media/v3/upload/{s}/{id}`,
 * the authenticated `/_matrix/client/v1/media/{config,download}` reads, the legacy
 * unauthenticated `/_matrix/media/{v3,r0}/download` reads (TESSERA_MEDIA_LEGACY) and the
 * administrators' quarantine. Bodies stream into the MediaService; nothing here buffers a file.
 */
import { type Context, Hono } from "hono";
import { invalidParam, MatrixError, notFound, tooLarge } from "../../domain/errors.ts";
import { parseServerName } from "../../domain/protocol/identifiers.ts";
import {
  DEFAULT_MEDIA_TIMEOUT_MS,
  MAX_MEDIA_TIMEOUT_MS,
  MEDIA_ID_PATTERN,
  type OpenedMedia,
} from "../../domain/media/media_service.ts";
import type { AppDeps } from "../deps.ts";
import { type ClientEnv, requireSession } from "../client/session_middleware.ts";
import { rateLimited } from "../client/rate_limit_middleware.ts";
import { mediaHeaders } from "./media_headers.ts";
import { roomIdParam } from "../client/path_params.ts";
import { quarantineRoomMedia } from "../../domain/media/room_media_quarantine.ts";

/** Longest Content-Type kept for an upload. */
const MAX_CONTENT_TYPE_LENGTH = 255;
/** Longest file name kept for an upload, in bytes (it lives in the metadata record). */
const MAX_FILE_NAME_BYTES = 1024;

/** A media path's server name: 400 M_INVALID_PARAM unless it parses. */
export function mediaServerParam(c: Context, name = "serverName"): string {
  const value = c.req.param(name) ?? "";
  if (!parseServerName(value).ok) throw invalidParam("Invalid server name");
  return value;
}

/** A media path's media ID: 404 M_NOT_FOUND unless it is `[A-Za-z0-9_-]{1,255}` (no look-up). */
export function mediaIdParam(c: Context, name = "mediaId"): string {
  const value = c.req.param(name) ?? "";
  if (!MEDIA_ID_PATTERN.test(value)) throw notFound("Unknown media ID");
  return value;
}

/** The request's Content-Length, when it has one; 400 when it is not a byte count. */
function declaredLength(c: Context): number | undefined {
  const raw = c.req.header("content-length");
  if (raw === undefined) return undefined;
  if (!/^\d{1,16}$/.test(raw.trim())) throw invalidParam("Invalid Content-Length");
  return Number(raw.trim());
}

/** The upload's Content-Type (default application/octet-stream), bounded and one line. */
function uploadContentType(c: Context): string {
  const raw = c.req.header("content-type")?.trim();
  if (raw === undefined || raw === "") return "application/octet-stream";
  if (raw.length > MAX_CONTENT_TYPE_LENGTH || !/^[\x20-\x7e]+$/.test(raw)) {
    throw invalidParam("Invalid Content-Type");
  }
  return raw;
}

/** The `filename` query parameter, when given. */
function uploadFileName(c: Context): string | undefined {
  const name = c.req.query("filename");
  if (name === undefined || name === "") return undefined;
  if (new TextEncoder().encode(name).byteLength > MAX_FILE_NAME_BYTES) {
    throw invalidParam(`filename is longer than ${MAX_FILE_NAME_BYTES} bytes`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) throw invalidParam("filename holds control characters");
  return name;
}

/** What an upload request says about its body; 413 at once for a declared size over the limit. */
function uploadInfo(c: Context<ClientEnv>, deps: AppDeps) {
  const session = c.get("session");
  if (session.suspended) {
    throw new MatrixError("M_USER_SUSPENDED", 403, "This account has been suspended");
  }
  const declared = declaredLength(c);
  if (declared !== undefined && declared > deps.media.maxUploadBytes) {
    throw tooLarge(`Uploads are limited to ${deps.media.maxUploadBytes} bytes`);
  }
  const fileName = uploadFileName(c);
  return {
    contentType: uploadContentType(c),
    ...(fileName !== undefined ? { fileName } : {}),
    ...(declared !== undefined ? { declaredLength: declared } : {}),
    uploader: session.userId,
  };
}

/** The body as a stream (an empty one when the request has none). */
function bodyOf(c: Context): ReadableStream<Uint8Array> | Uint8Array {
  return c.req.raw.body ?? new Uint8Array(0);
}

/** A media body response with the safety headers; `fileName` overrides the stored name. */
export function mediaResponse(opened: OpenedMedia, fileName?: string): Response {
  const meta = opened.meta;
  const name = fileName ?? meta.fileName;
  return new Response(opened.stream, {
    status: 200,
    headers: mediaHeaders({
      contentType: meta.contentType,
      ...(name !== undefined ? { fileName: name } : {}),
      size: meta.size,
    }),
  });
}

/** `allow_remote=false` keeps a read to what is stored here (the spec's loop guard). */
function allowRemote(c: Context): boolean {
  const raw = c.req.query("allow_remote");
  if (raw === undefined) return true;
  if (raw === "true") return true;
  if (raw === "false") return false;
  throw invalidParam("allow_remote must be true or false");
}

/** `timeout_ms`: how long a read may wait for media not uploaded yet (capped). */
export function mediaTimeoutMs(c: Context): number {
  const raw = c.req.query("timeout_ms");
  if (raw === undefined) return DEFAULT_MEDIA_TIMEOUT_MS;
  if (!/^\d{1,12}$/.test(raw)) throw invalidParam("timeout_ms must be a whole number");
  return Math.min(Number(raw), MAX_MEDIA_TIMEOUT_MS);
}

/**
 * Open media for an authenticated read: stored (or fetched from its origin), else, for one of
 * our IDs reserved by `/create`, waited for until `timeout_ms` (504 M_NOT_YET_UPLOADED).
 */
export async function openForRead(
  deps: AppDeps,
  c: Context,
  server: string,
  mediaId: string,
): Promise<OpenedMedia | null> {
  const timeoutMs = mediaTimeoutMs(c);
  const opened = await deps.media.open(server, mediaId, { allowRemote: allowRemote(c) });
  if (opened !== null || server !== deps.config.serverName) return opened;
  return await deps.media.awaitUpload(server, mediaId, timeoutMs, c.req.raw.signal);
}

/** The upload, download, config and quarantine routes. */
export function mediaUploadApp(deps: AppDeps): Hono {
  const app = new Hono<ClientEnv>();
  const auth = requireSession(deps.sessions);

  const upload = async (c: Context<ClientEnv>) => {
    const info = uploadInfo(c, deps);
    const { mxc } = await deps.media.upload(bodyOf(c), info);
    return c.json({ content_uri: mxc });
  };
  for (const version of ["v3", "r0", "v1"]) {
    app.post(`/_matrix/media/${version}/upload`, auth, rateLimited(deps, "media_upload"), upload);
  }

  app.post("/_matrix/media/v1/create", auth, rateLimited(deps, "media_create"), async (c) => {
    const session = c.get("session");
    if (session.suspended) {
      throw new MatrixError("M_USER_SUSPENDED", 403, "This account has been suspended");
    }
    const created = await deps.media.createPending(session.userId);
    return c.json({ content_uri: created.mxc, unused_expires_at: created.unusedExpiresAt });
  });

  const uploadPending = async (c: Context<ClientEnv>) => {
    const server = mediaServerParam(c);
    const mediaId = mediaIdParam(c);
    const info = uploadInfo(c, deps);
    await deps.media.uploadPending(server, mediaId, bodyOf(c), info);
    return c.json({});
  };
  for (const version of ["v3", "r0"]) {
    app.put(
      `/_matrix/media/${version}/upload/:serverName/:mediaId`,
      auth,
      rateLimited(deps, "media_upload"),
      uploadPending,
    );
  }

  const config = (c: Context<ClientEnv>) => c.json({ "m.upload.size": deps.media.maxUploadBytes });
  app.get("/_matrix/client/v1/media/config", auth, config);
  for (const version of ["v3", "r0", "v1"]) {
    app.get(`/_matrix/media/${version}/config`, auth, config);
  }

  const download = async (c: Context<ClientEnv>) => {
    const server = mediaServerParam(c);
    const mediaId = mediaIdParam(c);
    const opened = await openForRead(deps, c, server, mediaId);
    if (opened === null) throw notFound("Unknown media");
    return mediaResponse(opened, c.req.param("fileName"));
  };
  app.get("/_matrix/client/v1/media/download/:serverName/:mediaId", auth, download);
  app.get("/_matrix/client/v1/media/download/:serverName/:mediaId/:fileName", auth, download);

  // The spec froze these unauthenticated reads (v1.11): served per TESSERA_MEDIA_LEGACY.
  const legacyDownload = async (c: Context) => {
    const server = mediaServerParam(c);
    const mediaId = mediaIdParam(c);
    const opened = await openLegacy(deps, server, mediaId, allowRemote(c));
    if (opened === null) throw notFound("Unknown media");
    return mediaResponse(opened, c.req.param("fileName"));
  };
  for (const version of ["v3", "r0", "v1"]) {
    app.get(`/_matrix/media/${version}/download/:serverName/:mediaId`, legacyDownload);
    app.get(`/_matrix/media/${version}/download/:serverName/:mediaId/:fileName`, legacyDownload);
  }

  const quarantine = (quarantined: boolean) => async (c: Context<ClientEnv>) => {
    const session = c.get("session");
    if (!deps.moderation.isAdmin(session.userId)) {
      throw new MatrixError("M_FORBIDDEN", 403, "You are not a server admin");
    }
    const server = mediaServerParam(c);
    const mediaId = mediaIdParam(c);
    if (!await deps.media.quarantine(server, mediaId, quarantined)) {
      throw notFound("Unknown media");
    }
    return c.json({});
  };
  app.post("/_synapse/admin/v1/media/quarantine/:serverName/:mediaId", auth, quarantine(true));
  app.post("/_synapse/admin/v1/media/unquarantine/:serverName/:mediaId", auth, quarantine(false));
  app.post("/_synapse/admin/v1/room/:roomId/media/quarantine", auth, async (c) => {
    if (!deps.moderation.isAdmin(c.get("session").userId)) {
      throw new MatrixError("M_FORBIDDEN", 403, "You are not a server admin");
    }
    const roomId = roomIdParam(c);
    const count = await quarantineRoomMedia({
      timeline: (room, options) => deps.eventStore.timeline(room, options),
      quarantine: (server, mediaId) => deps.media.quarantine(server, mediaId),
    }, roomId);
    return c.json({ num_quarantined: count });
  });

  return app as unknown as Hono;
}

/**
 * Open media for a legacy unauthenticated read, or null: `off` serves nothing, `on` everything,
 * `frozen` only media stored before the freeze (remote media not cached then is not fetched).
 */
export async function openLegacy(
  deps: AppDeps,
  server: string,
  mediaId: string,
  remote: boolean,
): Promise<OpenedMedia | null> {
  const mode = deps.config.media.legacy;
  if (mode === "off") return null;
  const opened = await deps.media.open(server, mediaId, {
    allowRemote: remote && mode === "on",
  });
  if (opened === null) return null;
  if (!await deps.media.legacyReadable(opened.meta)) {
    await opened.stream.cancel();
    return null;
  }
  return opened;
}
