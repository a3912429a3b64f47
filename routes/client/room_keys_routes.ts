/**
 * Server-side key backups (spec: "Server-side key backups"): backup versions under
 * `/room_keys/version` and encrypted session keys under `/room_keys/keys`, per room and per
 * session, each naming its backup with `?version=`.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { badJson, invalidParam, missingParam } from "../../domain/errors.ts";
import { isBackupRoomId, MAX_NAME_BYTES } from "../../domain/e2ee/key_backup_service.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../../domain/protocol/json.ts";
import type { BackedUpKey } from "../../domain/ports/key_backup_store.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, validate } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { pathParam } from "./path_params.ts";

/**
 * Largest key upload: a client restoring or re-uploading a whole backup may send thousands of
 * sessions (about 1 KiB each) in one request.
 */
export const MAX_ROOM_KEYS_BODY_BYTES = 8 * 1024 * 1024;

const jsonObject = z.custom<JsonObject>(isJsonObject, "must be a JSON object");
// auth_data: any JSON value (see authData); the service checks the spec algorithm's AuthData.
const versionBody = z.object({
  algorithm: z.string(),
  auth_data: z.unknown(),
  version: z.string().optional(),
});
const keyBackupData = z.object({
  first_message_index: z.number().int().min(0),
  forwarded_count: z.number().int().min(0),
  is_verified: z.boolean(),
  // Opaque to the server: any JSON value but a missing one (checked in backedUpKey).
  session_data: z.unknown(),
});
// The maps are walked by hand (not z.record), so a session ID such as "__proto__" survives.
const allKeysBody = z.object({ rooms: jsonObject });
const roomKeysBody = z.object({ sessions: jsonObject });
const uploadLimit = { maxBytes: MAX_ROOM_KEYS_BODY_BYTES };

/** The room_keys area. */
export function roomKeysArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "user_write");
  const backup = deps.keyBackup;
  const me = (c: Context<ClientEnv>) => c.get("session").userId;

  v3.post("/room_keys/version", session, limited, async (c) => {
    const body = await readJsonBody(c, versionBody);
    return c.json(await backup.createVersion(me(c), body.algorithm, authData(body.auth_data)));
  });

  v3.get("/room_keys/version", session, async (c) => {
    return c.json(await backup.currentVersion(me(c)));
  });

  v3.get("/room_keys/version/:version", session, async (c) => {
    return c.json(await backup.version(me(c), pathParam(c, "version")));
  });

  v3.put("/room_keys/version/:version", session, limited, async (c) => {
    const body = await readJsonBody(c, versionBody);
    await backup.updateVersion(me(c), pathParam(c, "version"), {
      algorithm: body.algorithm,
      authData: authData(body.auth_data),
      version: body.version,
    });
    return c.json({});
  });

  v3.delete("/room_keys/version/:version", session, limited, async (c) => {
    await backup.deleteVersion(me(c), pathParam(c, "version"));
    return c.json({});
  });

  v3.put("/room_keys/keys", session, limited, async (c) => {
    const version = versionQuery(c);
    const body = await readJsonBody(c, allKeysBody, uploadLimit);
    const keys: BackedUpKey[] = [];
    for (const [roomId, room] of Object.entries(body.rooms)) {
      const { sessions } = validate(roomKeysBody, room, `body at 'rooms.${roomId}'`);
      keys.push(...sessionKeys(roomId, sessions, `rooms.${roomId}.sessions`));
    }
    return c.json(await backup.putKeys(me(c), version, keys));
  });

  v3.put("/room_keys/keys/:roomId", session, limited, async (c) => {
    const version = versionQuery(c);
    const roomId = backupRoomIdParam(c);
    const body = await readJsonBody(c, roomKeysBody, uploadLimit);
    return c.json(await backup.putKeys(me(c), version, sessionKeys(roomId, body.sessions)));
  });

  v3.put("/room_keys/keys/:roomId/:sessionId", session, limited, async (c) => {
    const version = versionQuery(c);
    const roomId = backupRoomIdParam(c);
    const sessionId = sessionIdParam(c);
    const data = await readJsonBody(c, keyBackupData);
    return c.json(await backup.putKeys(me(c), version, [backedUpKey(roomId, sessionId, data)]));
  });

  v3.get("/room_keys/keys", session, async (c) => {
    return c.json(await backup.allKeys(me(c), versionQuery(c)));
  });

  v3.get("/room_keys/keys/:roomId", session, async (c) => {
    return c.json(await backup.roomKeys(me(c), versionQuery(c), backupRoomIdParam(c)));
  });

  v3.get("/room_keys/keys/:roomId/:sessionId", session, async (c) => {
    const args = [versionQuery(c), backupRoomIdParam(c), sessionIdParam(c)] as const;
    return c.json(await backup.sessionKey(me(c), ...args));
  });

  v3.delete("/room_keys/keys", session, limited, async (c) => {
    return c.json(await backup.deleteKeys(me(c), versionQuery(c)));
  });

  v3.delete("/room_keys/keys/:roomId", session, limited, async (c) => {
    return c.json(await backup.deleteKeys(me(c), versionQuery(c), backupRoomIdParam(c)));
  });

  v3.delete("/room_keys/keys/:roomId/:sessionId", session, limited, async (c) => {
    const args = [versionQuery(c), backupRoomIdParam(c), sessionIdParam(c)] as const;
    return c.json(await backup.deleteKeys(me(c), ...args));
  });

  return { v3: v3 as unknown as Hono };
}

/** The required `auth_data` of a version body: parsed JSON, so any value but a missing one. */
function authData(value: unknown): JsonValue {
  return requiredJson(value, "auth_data");
}

/** A required opaque field of a parsed JSON body: any value but a missing one. */
function requiredJson(value: unknown, field: string): JsonValue {
  if (value === undefined) throw missingParam(`Missing body parameter '${field}'`);
  return value as JsonValue;
}

/** The `{roomId}` path parameter, checked as backups check room IDs (`isBackupRoomId`). */
function backupRoomIdParam(c: Context): string {
  const roomId = pathParam(c, "roomId");
  if (!isBackupRoomId(roomId)) throw invalidParam(`Invalid room ID ${JSON.stringify(roomId)}`);
  return roomId;
}

/** The required `?version=` of the key endpoints. */
function versionQuery(c: Context): string {
  const version = c.req.query("version");
  if (version === undefined) throw missingParam("Missing query parameter 'version'");
  return version;
}

/**
 * The `{sessionId}` path parameter: 1 to MAX_NAME_BYTES bytes, as uploads require, so a session
 * ID that could never have been stored (or would not fit a KV key) is refused before any read.
 */
function sessionIdParam(c: Context): string {
  const sessionId = pathParam(c, "sessionId");
  if (new TextEncoder().encode(sessionId).byteLength > MAX_NAME_BYTES) {
    throw invalidParam(`Session IDs must be 1 to ${MAX_NAME_BYTES} bytes`);
  }
  return sessionId;
}

/** The keys of one room's `sessions` map, each validated as KeyBackupData. */
function sessionKeys(roomId: string, sessions: JsonObject, at = "sessions"): BackedUpKey[] {
  return Object.entries(sessions).map(([sessionId, data]) => {
    if (!isJsonObject(data)) throw badJson(`Invalid body at '${at}.${sessionId}': not an object`);
    const parsed = validate(keyBackupData, data, `body at '${at}.${sessionId}'`);
    return backedUpKey(roomId, sessionId, parsed);
  });
}

function backedUpKey(
  roomId: string,
  sessionId: string,
  data: z.infer<typeof keyBackupData>,
): BackedUpKey {
  return {
    roomId,
    sessionId,
    firstMessageIndex: data.first_message_index,
    forwardedCount: data.forwarded_count,
    isVerified: data.is_verified,
    sessionData: requiredJson(data.session_data, "session_data"),
  };
}
