/**
 * Two real server processes (`main.ts --dev`) over one KV file, as several isolates share one
 * database on Deno Deploy: each on its own loopback port, both with one server name (they are
 * one homeserver). A small JSON client talks to either, and users are registered over HTTP.
 */
import { startServerProcess } from "../clients/server_process.ts";
import { freePort } from "../main_process.ts";
import { jsonRequest } from "../json_request.ts";

/** A JSON answer: status and parsed body. */
export interface Answer {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** One running process of the pair. */
export interface Node {
  readonly baseUrl: string;
  /** A client-server API request (`path` below `/_matrix/client/v3`). */
  api(method: string, path: string, token?: string, body?: unknown): Promise<Answer>;
  output(): string;
}

/** Two processes on one KV file, and `stop()` for both. */
export interface ProcessPair {
  a: Node;
  b: Node;
  /** The KV file both processes use. */
  kvPath: string;
  serverName: string;
  stop(): Promise<void>;
}

interface Running extends Node {
  stop(): Promise<void>;
}

/**
 * Start A, wait until it answers (it creates the signing key in KV), then start B on the same
 * file and server name; `extraEnv` adds configuration that may name the server (both get it).
 */
export async function startProcessPair(
  extraEnv: (serverName: string) => Record<string, string> = () => ({}),
): Promise<ProcessPair> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-two-process-" });
  const kvPath = `${dir}/tessera.kv`;
  const portA = freePort();
  const serverName = `localhost:${portA}`;
  const env = extraEnv(serverName);
  const started: Running[] = [];
  try {
    started.push(await startNode(portA, serverName, kvPath, env));
    started.push(await startNode(freePort(), serverName, kvPath, env));
  } catch (error) {
    for (const node of started) await node.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const [a, b] = started;
  return {
    a,
    b,
    kvPath,
    serverName,
    stop: async () => {
      await Promise.all([a.stop(), b.stop()]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function startNode(
  port: number,
  serverName: string,
  kvPath: string,
  env: Record<string, string>,
): Promise<Running> {
  const { baseUrl, output, stop } = await startServerProcess(
    { ...env, TESSERA_SERVER_NAME: serverName, TESSERA_KV_PATH: kvPath },
    port,
  );
  const api = (method: string, path: string, token?: string, body?: unknown) =>
    jsonRequest(
      (apiPath, init) => fetch(`${baseUrl}/_matrix/client/v3${apiPath}`, init),
      method,
      path,
      { token, body },
    );
  return { baseUrl, api, output, stop };
}

/** A registered user: ID, token, device. */
export interface User {
  userId: string;
  token: string;
  deviceId: string;
}

/** Register `localpart` through `node` (m.login.dummy), with a password when given. */
export async function register(node: Node, localpart: string, password?: string): Promise<User> {
  const body: Record<string, unknown> = { username: localpart, auth: { type: "m.login.dummy" } };
  if (password !== undefined) body.password = password;
  const res = await node.api("POST", "/register", undefined, body);
  if (res.status !== 200) throw new Error(`register ${localpart}: ${JSON.stringify(res.body)}`);
  return { userId: res.body.user_id, token: res.body.access_token, deviceId: res.body.device_id };
}

/** Log in again with a password through `node`: a new device and token. */
export async function login(node: Node, localpart: string, password: string): Promise<User> {
  const res = await node.api("POST", "/login", undefined, {
    type: "m.login.password",
    identifier: { type: "m.id.user", user: localpart },
    password,
  });
  if (res.status !== 200) throw new Error(`login ${localpart}: ${JSON.stringify(res.body)}`);
  return { userId: res.body.user_id, token: res.body.access_token, deviceId: res.body.device_id };
}

/**
 * A request behind user-interactive auth with m.login.password: the first try gets the
 * session, the second completes it. Returns the second answer.
 */
export async function withPasswordAuth(
  node: Node,
  method: string,
  path: string,
  user: User,
  password: string,
  body: Record<string, unknown>,
): Promise<Answer> {
  const challenge = await node.api(method, path, user.token, body);
  if (challenge.status !== 401 || !challenge.body?.session) return challenge;
  return node.api(method, path, user.token, {
    ...body,
    auth: {
      type: "m.login.password",
      session: challenge.body.session,
      identifier: { type: "m.id.user", user: user.userId },
      password,
    },
  });
}

/** Send an m.room.message through `node`; returns the answer (200 with event_id, or an error). */
export function sendText(node: Node, user: User, roomId: string, text: string): Promise<Answer> {
  const txn = crypto.randomUUID();
  return node.api(
    "PUT",
    `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
    user.token,
    { msgtype: "m.text", body: text },
  );
}
