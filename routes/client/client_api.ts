/**
 * The Client-Server API: each area is a Hono sub-app with paths relative to the API root,
 * mounted under `/_matrix/client/v3` and, for older clients such as matrix-nio, under the
 * legacy `/_matrix/client/r0`, which behaves the same. Areas with `/v1` endpoints mount
 * those apps under `/_matrix/client/v1`.
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { authArea } from "./auth_routes.ts";
import { pushRuleArea } from "./push_rule_routes.ts";
import { notificationArea } from "./notification_routes.ts";
import { pusherArea } from "./pusher_routes.ts";
import { accountArea } from "./account_routes.ts";
import { deviceArea } from "./device_routes.ts";
import { filterArea } from "./filter_routes.ts";
import { syncArea } from "./sync_routes.ts";
import { roomArea } from "./room_routes.ts";
import { roomEventArea } from "./room_event_routes.ts";
import { relationArea } from "./relation_routes.ts";
import { membershipArea } from "./membership_routes.ts";
import { directoryArea } from "./directory_routes.ts";
import { profileArea } from "./profile_routes.ts";
import { accountDataArea } from "./account_data_routes.ts";
import { ephemeralArea } from "./ephemeral_routes.ts";
import { capabilitiesArea } from "./capabilities_routes.ts";
import { userDirectoryArea } from "./user_directory_routes.ts";
import { voipArea } from "./voip_routes.ts";
import { crossSigningArea } from "./cross_signing_routes.ts";
import { keysUploadArea } from "./keys_upload_routes.ts";
import { keyChangesArea } from "./key_changes_routes.ts";
import { roomKeysArea } from "./room_keys_routes.ts";
import { toDeviceArea } from "./to_device_routes.ts";
import { dehydratedDeviceArea } from "./dehydrated_device_routes.ts";
import { openIdArea } from "./openid_routes.ts";
import { threepidArea } from "./threepid_routes.ts";
import { searchArea } from "./search_routes.ts";
import { spaceArea } from "./space_routes.ts";
import { legacySyncArea } from "./legacy_sync_routes.ts";
import { adminArea } from "./admin_routes.ts";
import { reportArea } from "./report_routes.ts";
import { thirdPartyArea } from "./third_party_routes.ts";
import { slidingSyncArea } from "./sliding_sync_routes.ts";

/** A client API area: its v3 (and r0) app, and optionally endpoints that live under /v1. */
export interface ClientArea {
  v3?: Hono;
  v1?: Hono;
  /** Unstable MSC endpoints, mounted under `/_matrix/client/unstable` (paths name the MSC). */
  unstable?: Hono;
  /** Endpoints under `/_matrix/client/v4` (MSC4186's sliding sync). */
  v4?: Hono;
}

/** Every area, in the order their routes are tried. Areas add themselves here. */
function clientAreas(deps: AppDeps): ClientArea[] {
  return [
    authArea(deps),
    pushRuleArea(deps),
    notificationArea(deps),
    pusherArea(deps),
    accountArea(deps),
    deviceArea(deps),
    syncArea(deps),
    filterArea(deps),
    roomArea(deps),
    roomEventArea(deps),
    relationArea(deps),
    membershipArea(deps),
    directoryArea(deps),
    profileArea(deps),
    accountDataArea(deps),
    ephemeralArea(deps),
    capabilitiesArea(deps),
    userDirectoryArea(deps),
    voipArea(deps),
    crossSigningArea(deps),
    keysUploadArea(deps),
    keyChangesArea(deps),
    roomKeysArea(deps),
    toDeviceArea(deps),
    dehydratedDeviceArea(deps),
    openIdArea(deps),
    threepidArea(deps),
    searchArea(deps),
    spaceArea(deps),
    legacySyncArea(deps),
    adminArea(deps),
    reportArea(deps),
    thirdPartyArea(deps),
    slidingSyncArea(deps, deps.slidingSync),
  ];
}

/**
 * Mount every client area under its prefixes. Stable endpoints are served under
 * `/_matrix/client/unstable` too, as Synapse serves them: clients written before an endpoint
 * became stable still call its unstable path (Element's `/unstable/keys/device_signing/upload`).
 */
export function clientApi(deps: AppDeps): Hono {
  const app = new Hono();
  const areas = clientAreas(deps);
  for (const area of areas) {
    if (area.v3) {
      app.route("/_matrix/client/v3", area.v3);
      app.route("/_matrix/client/r0", area.v3);
    }
    if (area.v1) app.route("/_matrix/client/v1", area.v1);
    if (area.unstable) app.route("/_matrix/client/unstable", area.unstable);
    if (area.v4) app.route("/_matrix/client/v4", area.v4);
  }
  // After every area's own unstable routes, so an MSC path always wins.
  for (const area of areas) {
    if (area.v3) app.route("/_matrix/client/unstable", area.v3);
    if (area.v1) app.route("/_matrix/client/unstable", area.v1);
  }
  return app;
}
