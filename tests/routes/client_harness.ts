/**
 * Helpers for client API tests: register users over the real HTTP surface of a test server
 * (`startTestServer()`), and options that keep password hashing cheap in tests.
 */
import type { JsonResponse, RequestOptions } from "./test_server.ts";
import type { ScryptParams } from "../../domain/accounts/password_hash.ts";

/** What `registerUser` needs of a test server. */
export interface HarnessServer {
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
}

/** A registered user's credentials. */
export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

/**
 * Pass as `startTestServer(env, FAST_HASHING)` when a test sets passwords: scrypt with N = 2^10
 * instead of 2^15 (it is a variable, so the wider type passes through to assembleServer).
 */
export const FAST_HASHING: { now?: () => number; passwordHashing: ScryptParams } = {
  passwordHashing: { logN: 10, r: 8, p: 1 },
};

/**
 * Register `localpart` with m.login.dummy and return its session. Without `password` the
 * account has none (no scrypt cost; it cannot use password login).
 */
export async function registerUser(
  server: HarnessServer,
  localpart: string,
  password?: string,
): Promise<RegisteredUser> {
  const body: Record<string, unknown> = {
    username: localpart,
    auth: { type: "m.login.dummy" },
  };
  if (password !== undefined) body.password = password;
  const res = await server.request("POST", "/_matrix/client/v3/register", { body });
  if (res.status !== 200) {
    throw new Error(`registerUser(${localpart}): ${res.status} ${JSON.stringify(res.body)}`);
  }
  return {
    userId: res.body.user_id,
    accessToken: res.body.access_token,
    deviceId: res.body.device_id,
  };
}

/**
 * An m.login.password body: the `auth` of a user-interactive step (with the `session` of its
 * challenge), or without a session a /login body.
 */
export function passwordAuth(user: string, password: string, session?: string) {
  return {
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    ...(session ? { session } : {}),
  };
}

/**
 * Log `localpart` in with `password` (as `deviceId` when given, else a new device): that
 * device's credentials. For tests that need a user's second device.
 */
export async function loginUser(
  server: HarnessServer,
  localpart: string,
  password: string,
  deviceId?: string,
): Promise<RegisteredUser> {
  const body: Record<string, unknown> = passwordAuth(localpart, password);
  if (deviceId !== undefined) body.device_id = deviceId;
  const res = await server.request("POST", "/_matrix/client/v3/login", { body });
  if (res.status !== 200) {
    throw new Error(`loginUser(${localpart}): ${res.status} ${JSON.stringify(res.body)}`);
  }
  return {
    userId: res.body.user_id,
    accessToken: res.body.access_token,
    deviceId: res.body.device_id,
  };
}

/** Create a public room as `creator` (with createRoom's `fields` besides): its ID. */
export async function createPublicRoom(
  server: HarnessServer,
  creator: RegisteredUser,
  fields: Record<string, unknown> = {},
): Promise<string> {
  const res = await server.request("POST", "/_matrix/client/v3/createRoom", {
    token: creator.accessToken,
    body: { preset: "public_chat", ...fields },
  });
  if (res.status !== 200) {
    throw new Error(`createPublicRoom: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body.room_id;
}

/** Join `roomId` as `user`. */
export async function joinRoom(
  server: HarnessServer,
  user: RegisteredUser,
  roomId: string,
): Promise<void> {
  const res = await server.request(
    "POST",
    `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`,
    {
      token: user.accessToken,
      body: {},
    },
  );
  if (res.status !== 200) {
    throw new Error(`joinRoom(${user.userId}): ${res.status} ${JSON.stringify(res.body)}`);
  }
}

/**
 * Send an m.text message as `user` (a new transaction each time): the answer, 200 with the
 * event_id or the refusal a test may be looking for.
 */
export function sendText(
  server: HarnessServer,
  user: RegisteredUser,
  roomId: string,
  body: string,
): Promise<JsonResponse> {
  const path = `/_matrix/client/v3/rooms/${
    encodeURIComponent(roomId)
  }/send/m.room.message/${crypto.randomUUID()}`;
  return server.request("PUT", path, {
    token: user.accessToken,
    body: { msgtype: "m.text", body },
  });
}
