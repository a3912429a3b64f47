/**
 * The media repository's HTTP surface: each part of it (uploads and downloads, thumbnails, URL
 * previews) is a Hono sub-app with full paths (`/_matrix/media/...`,
 * `/_matrix/client/v1/media/...`), mounted here; routes/app.ts mounts this one.
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { mediaUploadApp } from "./upload_routes.ts";
import { mediaPreviewApp } from "./preview_routes.ts";
import { mediaThumbnailApp } from "./thumbnail_routes.ts";

/** Every media route. Parts add one `app.route` line each. */
export function mediaApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.route("/", mediaUploadApp(deps));
  app.route("/", mediaPreviewApp(deps));
  app.route("/", mediaThumbnailApp(deps));
  return app;
}
