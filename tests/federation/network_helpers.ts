/**
 * What the federation tests do over the in-process network again and again: run a test on a
 * fresh network, make a client call that must succeed, send a message.
 */
import assert from "node:assert/strict";
import {
  type Network,
  type NetworkOptions,
  type NetworkServer,
  startNetwork,
} from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

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
