/**
 * What the federation tests do over the in-process network again and again: run a test on a
 * fresh network, make a client call that must succeed, send a message, share a room across two
 * servers, upload a device's keys, hold back an invite, push a transaction of EDUs and read back
 * the EDUs sent.
 */
import assert from "node:assert/strict";
import {
  type Network,
  type NetworkOptions,
  type NetworkServer,
  startNetwork,
} from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { newDeviceKeys } from "../domain/e2ee/cross_signing_fixtures.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";

/** Run `fn` on a fresh network of `names` (a.test and b.test by default), closed afterwards. */
export async function withNetwork(
  fn: (net: Network) => Promise<void>,
  names: readonly string[] = ["a.test", "b.test"],
  options: NetworkOptions = {},
): Promise<void> {
  const net = await startNetwork(names, options);
  try {
    await fn(net);
  } finally {
    await net.close();
  }
}

/** A client call by `user` on `server` that must answer 200; its body. */
export async function ok(
  server: NetworkServer,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await server.request(method, path, {
    token: user.accessToken,
    ...(body !== undefined ? { body } : {}),
  });
  assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Send a text message as `user`; its event ID. */
export async function say(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  body: string,
): Promise<string> {
  const path = `/_matrix/client/v3/rooms/${
    encodeURIComponent(roomId)
  }/send/m.room.message/${crypto.randomUUID()}`;
  const res = await ok(server, user, "PUT", path, { msgtype: "m.text", body });
  return res.event_id as string;
}

/** Create a room as `user` on `server` with the given createRoom body; its room ID. */
export async function createRoom(
  server: NetworkServer,
  user: RegisteredUser,
  body: Record<string, unknown>,
): Promise<string> {
  const res = await ok(server, user, "POST", "/_matrix/client/v3/createRoom", body);
  return res.room_id as string;
}

/** `userId`'s membership in `roomId` as `viewer` on `server` sees it; undefined when unreadable. */
export async function memberOn(
  server: NetworkServer,
  viewer: RegisteredUser,
  roomId: string,
  userId: string,
): Promise<string | undefined> {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${
    encodeURIComponent(userId)
  }`;
  const res = await server.request("GET", path, { token: viewer.accessToken });
  return res.status === 200 ? res.body.membership as string : undefined;
}

/** Upload freshly made self-signed device keys for `device` (a user's device) on `server`; them. */
export async function uploadDeviceKeys(
  server: NetworkServer,
  device: RegisteredUser,
): Promise<JsonObject> {
  const { keys } = await newDeviceKeys(device.userId, device.deviceId);
  await ok(server, device, "POST", "/_matrix/client/v3/keys/upload", { device_keys: keys });
  return keys;
}

/**
 * The invite of `inviteeId` that `inviter` on `server` makes in `roomId`, caught on its way to
 * the invitee's server and never delivered (that server seems to answer 403): the signed request
 * body (`event`, `room_version`, `invite_room_state`), for a test to replay, tamper with or drop.
 */
export async function heldInvite(
  net: Network,
  server: NetworkServer,
  inviter: RegisteredUser,
  roomId: string,
  inviteeId: string,
): Promise<JsonObject> {
  let captured: JsonObject | undefined;
  net.intercept((r) => {
    if (!r.path.includes("/invite/")) return "deliver";
    captured = r.body as JsonObject;
    return { status: 403, body: { errcode: "M_FORBIDDEN", error: "held" } };
  });
  try {
    await server.request("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, {
      token: inviter.accessToken,
      body: { user_id: inviteeId },
    });
  } finally {
    net.intercept(undefined);
  }
  assert.ok(captured, "no invite went out");
  return captured;
}

/**
 * `creator` on `home` makes a public room (`body` adds to the createRoom request) and `joiner` on
 * `guest` joins it over federation (through `home`); its room ID.
 */
export async function sharedPublicRoom(
  home: NetworkServer,
  creator: RegisteredUser,
  guest: NetworkServer,
  joiner: RegisteredUser,
  body: Record<string, unknown> = {},
): Promise<string> {
  const roomId = await createRoom(home, creator, { preset: "public_chat", ...body });
  await joinThrough(guest, joiner, roomId, home.name);
  return roomId;
}

/** `user` on `server` joins `roomId` over federation through `via` (must answer 200). */
export async function joinThrough(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  via: string,
): Promise<void> {
  const path = `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${via}`;
  await ok(server, user, "POST", path, {});
}

/**
 * Push one transaction carrying `edus` (and no PDUs) from `origin` to `destination`, signed by
 * `origin` as its sender would; it must be answered 200.
 */
export async function sendEdus(
  net: Network,
  origin: string,
  destination: string,
  edus: readonly JsonObject[],
  txnId: string = crypto.randomUUID(),
): Promise<void> {
  const res = await net.transportFor(origin).request({
    method: "PUT",
    destination,
    path: `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`,
    body: { origin, origin_server_ts: Date.now(), pdus: [], edus: edus as JsonValue[] },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** An EDU as a transaction on the network carried it. */
export interface SentEdu {
  origin: string;
  destination: string;
  type: string;
  content: JsonObject;
}

/**
 * Every EDU in the transactions sent on the network so far (whatever became of them: the log
 * keeps refused and intercepted requests too), in order; only those from `origin`, to
 * `destination` and of `type` where given.
 */
export function edusSent(
  net: Network,
  only: { origin?: string; destination?: string; type?: string } = {},
): SentEdu[] {
  return net.log
    .filter((r) =>
      r.path.startsWith("/_matrix/federation/v1/send/") &&
      (only.origin === undefined || r.origin === only.origin) &&
      (only.destination === undefined || r.destination === only.destination)
    )
    .flatMap((r) =>
      ((r.body as { edus?: { edu_type: string; content: JsonObject }[] } | null)?.edus ?? [])
        .map((e) => ({
          origin: r.origin,
          destination: r.destination,
          type: e.edu_type,
          content: e.content,
        }))
    )
    .filter((e) => only.type === undefined || e.type === only.type);
}
