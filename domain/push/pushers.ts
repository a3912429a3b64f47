/**
 * Pushers (`POST /pushers/set`, `GET /pushers`), pure: a user's pushers as one list, and how a
 * set request changes it. A pusher remembers the device whose access token created it, so it
 * goes with that device (logout, deletion, a password change logging other devices out).
 */
import { invalidParam, MatrixError } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";

/** The path every HTTP pusher's URL must have (Push Gateway API). */
export const PUSH_GATEWAY_PATH = "/_matrix/push/v1/notify";
/** Most pushers one user may hold (all of them live in one stored record). */
export const MAX_PUSHERS_PER_USER = 16;
/** Largest `data` object of a pusher, as UTF-8 JSON. */
export const MAX_PUSHER_DATA_BYTES = 2_048;

/** One stored pusher. */
export interface Pusher {
  /** Server-chosen, stable across replacements: the pusher's outbox stream. */
  id: string;
  /** The device whose access token created (or last replaced) it. */
  deviceId: string;
  kind: string;
  app_id: string;
  pushkey: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag?: string;
  lang: string;
  data: JsonObject;
  /** When it was set, in milliseconds (the gateway gets seconds as `pushkey_ts`). */
  pushkeyTs: number;
}

/** A `POST /pushers/set` body after the edge checked its shape; `kind: null` deletes. */
export interface PusherSetRequest {
  kind: string | null;
  app_id: string;
  pushkey: string;
  app_display_name?: string;
  device_display_name?: string;
  profile_tag?: string;
  lang?: string;
  data?: JsonObject;
  append?: boolean;
}

/** A pusher as `GET /pushers` shows it. */
export function pusherView(p: Pusher): JsonObject {
  const view: JsonObject = {
    pushkey: p.pushkey,
    kind: p.kind,
    app_id: p.app_id,
    app_display_name: p.app_display_name,
    device_display_name: p.device_display_name,
    lang: p.lang,
    data: p.data,
  };
  if (p.profile_tag !== undefined) view.profile_tag = p.profile_tag;
  return view;
}

/** Refuse a pusher the server could not use; HTTP pushers need a gateway URL of the spec's path. */
export function checkPusher(request: PusherSetRequest): void {
  if (request.kind === null) return;
  for (const field of ["app_display_name", "device_display_name", "lang", "data"] as const) {
    if (request[field] === undefined) {
      throw new MatrixError("M_MISSING_PARAM", 400, `Missing '${field}'`);
    }
  }
  if (new TextEncoder().encode(JSON.stringify(request.data)).length > MAX_PUSHER_DATA_BYTES) {
    throw invalidParam(`'data' is over ${MAX_PUSHER_DATA_BYTES} bytes`);
  }
  // Only HTTP pushers have a sender; an email pusher would be accepted and never used.
  if (request.kind !== "http") throw invalidParam(`Unsupported pusher kind '${request.kind}'`);
  const url = request.data?.url;
  if (typeof url !== "string" || !URL.canParse(url)) {
    throw invalidParam("HTTP pushers need 'data.url', the push gateway's URL");
  }
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw invalidParam("'data.url' must be an http(s) URL");
  }
  if (parsed.pathname !== PUSH_GATEWAY_PATH) {
    throw invalidParam(`'data.url' must have the path ${PUSH_GATEWAY_PATH}`);
  }
}

/** Whether `p` is the pusher an (app_id, pushkey) pair names. */
export function samePusher(p: Pick<Pusher, "app_id" | "pushkey">, appId: string, pushkey: string) {
  return p.app_id === appId && p.pushkey === pushkey;
}

/**
 * The user's pushers after a set request: `kind: null` removes the pair's pusher; otherwise it
 * is added or replaced (keeping its ID, so its queued notifications still go out).
 */
export function applyPusherSet(
  pushers: readonly Pusher[],
  request: PusherSetRequest,
  context: { deviceId: string; now: number; newId: () => string },
): Pusher[] {
  const others = pushers.filter((p) => !samePusher(p, request.app_id, request.pushkey));
  if (request.kind === null) return others;
  const existing = pushers.find((p) => samePusher(p, request.app_id, request.pushkey));
  if (!existing && others.length >= MAX_PUSHERS_PER_USER) {
    throw new MatrixError(
      "M_TOO_LARGE",
      413,
      `You have ${MAX_PUSHERS_PER_USER} pushers, the most allowed; delete one first`,
    );
  }
  const pusher: Pusher = {
    id: existing?.id ?? context.newId(),
    deviceId: context.deviceId,
    kind: request.kind,
    app_id: request.app_id,
    pushkey: request.pushkey,
    app_display_name: request.app_display_name!,
    device_display_name: request.device_display_name!,
    lang: request.lang!,
    data: request.data!,
    pushkeyTs: context.now,
  };
  if (request.profile_tag !== undefined) pusher.profile_tag = request.profile_tag;
  return [...others, pusher];
}
