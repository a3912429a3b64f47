/**
 * A minimal Matrix client for `scripts/bench_client.ts`: the few Client-Server API calls the
 * benchmark makes, over real HTTP with `fetch` (keep-alive). Each client may carry its own
 * `Deno.HttpClient`, so its connections are its own and not queued behind other users'.
 */

/** A session on the server: who, and how to authenticate. */
export interface Session {
  userId: string;
  accessToken: string;
  deviceId: string;
}

/** The parts of a /sync response the benchmark reads. */
export interface SyncBody {
  next_batch: string;
  rooms?: {
    join?: Record<
      string,
      { timeline?: { events?: { event_id?: string; content?: Record<string, unknown> }[] } }
    >;
  };
}

/** An HTTP error from the server, with its status and body. */
export class HttpError extends Error {
  /** From the request line and the response. */
  constructor(readonly status: number, what: string, body: string) {
    super(`${what}: ${status} ${body.slice(0, 300)}`);
  }
}

/** One user (or device) talking to the server. */
export class BenchClient {
  /** Over the server's base URL; `http` is a dedicated connection pool, when given. */
  constructor(
    readonly base: string,
    readonly session: Session,
    readonly http?: Deno.HttpClient,
  ) {}

  /**
   * Register `localpart` with m.login.dummy, and no password (no scrypt cost) unless `password`
   * is given (for benches that sign in on a page).
   */
  static async register(
    base: string,
    localpart: string,
    http?: Deno.HttpClient,
    password?: string,
  ): Promise<BenchClient> {
    const body = await request(base, http, "POST", "/_matrix/client/v3/register", undefined, {
      username: localpart,
      ...(password === undefined ? {} : { password }),
      auth: { type: "m.login.dummy" },
      inhibit_login: false,
    }) as { user_id: string; access_token: string; device_id: string };
    return new BenchClient(base, {
      userId: body.user_id,
      accessToken: body.access_token,
      deviceId: body.device_id,
    }, http);
  }

  /** `POST /createRoom`; public, so others can join by ID. */
  async createRoom(name?: string): Promise<string> {
    const body = await this.#call("POST", "/_matrix/client/v3/createRoom", {
      preset: "public_chat",
      ...(name ? { name } : {}),
    }) as { room_id: string };
    return body.room_id;
  }

  /** `POST /join/{roomId}`. */
  async join(roomId: string): Promise<void> {
    await this.#call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
  }

  /** `PUT /rooms/{roomId}/send/m.room.message/{txnId}`; returns the event ID. */
  async send(roomId: string, txnId: string, text: string): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${
      encodeURIComponent(txnId)
    }`;
    const body = await this.#call("PUT", path, { msgtype: "m.text", body: text }) as {
      event_id: string;
    };
    return body.event_id;
  }

  /** `GET /sync`, initial without `since`, long-polling up to `timeoutMs` with it. */
  async sync(
    options: { since?: string; timeoutMs?: number; signal?: AbortSignal; presence?: string } = {},
  ): Promise<SyncBody> {
    const query = new URLSearchParams();
    if (options.since !== undefined) query.set("since", options.since);
    query.set("timeout", String(options.timeoutMs ?? 0));
    if (options.presence !== undefined) query.set("set_presence", options.presence);
    return await this.#call(
      "GET",
      `/_matrix/client/v3/sync?${query}`,
      undefined,
      options.signal,
    ) as SyncBody;
  }

  #call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    return request(this.base, this.http, method, path, this.session.accessToken, body, signal);
  }
}

async function request(
  base: string,
  http: Deno.HttpClient | undefined,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
  signal?: AbortSignal,
): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    ...(http ? { client: http } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new HttpError(res.status, `${method} ${path.split("?")[0]}`, text);
  return text ? JSON.parse(text) : null;
}

/** Whether a sync response's timeline for `roomId` holds the event `eventId`. */
export function syncHasEvent(body: SyncBody, roomId: string, eventId: string): boolean {
  const events = body.rooms?.join?.[roomId]?.timeline?.events ?? [];
  return events.some((e) => e.event_id === eventId);
}

/** Whether a sync response's timeline for `roomId` holds a message whose body is `text`. */
export function syncHasBody(body: SyncBody, roomId: string, text: string): boolean {
  const events = body.rooms?.join?.[roomId]?.timeline?.events ?? [];
  return events.some((e) => e.content?.body === text);
}
