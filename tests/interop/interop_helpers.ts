/**
 * Helpers of the Synapse interop scenarios (synapse_interop.ts, synapse_e2ee_interop.ts), run by
 * scripts/run_synapse_interop.sh: where the two servers are, plain client-API users, waiting for
 * a change to cross to the other server, and reading a user's /sync incrementally.
 *
 * The script serves both servers over HTTPS with a throwaway CA and passes it as DENO_CERT, so
 * the plain `fetch` here (and matrix-js-sdk's, which uses it) trusts both.
 */

/** Synapse's client API, as the script serves it. */
export const SYNAPSE = Deno.env.get("INTEROP_SYNAPSE") ?? "https://127.0.0.1:18500";
/** Tessera's client API, as the script serves it. */
export const TESSERA = Deno.env.get("INTEROP_TESSERA") ?? "https://127.0.0.1:18600";
/** How long a change may take to cross to the other server before the test gives up. */
export const CONVERGE_MS = 30_000;
/** The password of every user the scenarios register. */
export const PASSWORD = "interop-password-1";

/** A JSON object as the client API answers it. */
export type Json = Record<string, unknown>;

/** A logged-in user (one device: the one registration made) on one of the two servers. */
export class User {
  constructor(
    readonly base: string,
    readonly userId: string,
    readonly token: string,
    readonly deviceId = "",
  ) {}

  async call(method: string, path: string, body?: Json): Promise<{ status: number; body: Json }> {
    const response = await fetch(`${this.base}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : {} };
  }

  async ok(method: string, path: string, body?: Json): Promise<Json> {
    const { status, body: answer } = await this.call(method, path, body);
    if (status !== 200) {
      throw new Error(`${this.userId}: ${method} ${path} -> ${status} ${JSON.stringify(answer)}`);
    }
    return answer;
  }

  send(roomId: string, body: string): Promise<Json> {
    const txn = crypto.randomUUID();
    return this.ok("PUT", `/rooms/${enc(roomId)}/send/m.room.message/${txn}`, {
      msgtype: "m.text",
      body,
    });
  }

  /** The user's view of a room member's membership (current state), or undefined. */
  async membershipOf(roomId: string, userId: string): Promise<string | undefined> {
    const { status, body } = await this.call(
      "GET",
      `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`,
    );
    return status === 200 ? body.membership as string : undefined;
  }

  /** Message bodies of a room, oldest first, paginating backwards from the live end. */
  async messageBodies(roomId: string, limit = 100): Promise<string[]> {
    const page = await this.ok("GET", `/rooms/${enc(roomId)}/messages?dir=b&limit=${limit}`);
    const events = page.chunk as Json[];
    return events.filter((e) => e.type === "m.room.message")
      .map((e) => (e.content as Json).body as string).reverse();
  }

  /**
   * A /sync cursor for this user's device, at the live end now (after one full sync): what
   * {@link SyncCursor.until} sees afterwards is what changed since this call.
   */
  async syncCursor(): Promise<SyncCursor> {
    const first = await this.ok("GET", "/sync?timeout=0");
    return new SyncCursor(this, first.next_batch as string);
  }
}

/**
 * Incremental /sync of one device: each call to {@link until} long-polls from where the last
 * one stopped, so every response is looked at once, in order.
 */
export class SyncCursor {
  constructor(readonly user: User, private since: string) {}

  /**
   * Sync until `found` returns something for one response (checked on each response as it
   * comes), and return it; fail naming `what` after {@link CONVERGE_MS}.
   */
  async until<T>(what: string, found: (sync: Json) => T | undefined): Promise<T> {
    const deadline = Date.now() + CONVERGE_MS;
    while (Date.now() < deadline) {
      const sync = await this.user.ok(
        "GET",
        `/sync?timeout=1000&since=${enc(this.since)}`,
      );
      this.since = sync.next_batch as string;
      const value = found(sync);
      if (value !== undefined) return value;
    }
    throw new Error(`never seen in ${this.user.userId}'s /sync: ${what}`);
  }
}

/** The ephemeral events of `roomId` in one /sync response (joined rooms). */
export function ephemeralOf(sync: Json, roomId: string): Json[] {
  const join = (sync.rooms as Json | undefined)?.join as Json | undefined;
  const room = join?.[roomId] as Json | undefined;
  return ((room?.ephemeral as Json | undefined)?.events as Json[] | undefined) ?? [];
}

/** `device_lists.changed` of one /sync response. */
export function deviceListsChanged(sync: Json): string[] {
  return ((sync.device_lists as Json | undefined)?.changed as string[] | undefined) ?? [];
}

/** `device_lists.left` of one /sync response. */
export function deviceListsLeft(sync: Json): string[] {
  return ((sync.device_lists as Json | undefined)?.left as string[] | undefined) ?? [];
}

/** The presence events of one /sync response. */
export function presenceEvents(sync: Json): Json[] {
  return ((sync.presence as Json | undefined)?.events as Json[] | undefined) ?? [];
}

/** The to-device events of one /sync response. */
export function toDeviceEvents(sync: Json): Json[] {
  return ((sync.to_device as Json | undefined)?.events as Json[] | undefined) ?? [];
}

export function enc(s: string): string {
  return encodeURIComponent(s);
}

/** The server name (host and port) of a server's base URL, as its user IDs end. */
export function serverNameOf(base: string): string {
  return new URL(base).host;
}

/** Register with the dummy stage (both servers' registration is open for this run). */
export async function register(base: string, localpart: string): Promise<User> {
  const url = `${base}/_matrix/client/v3/register`;
  const body: Json = { username: localpart, password: PASSWORD };
  let response = await fetch(url, { method: "POST", body: JSON.stringify(body) });
  let answer = await response.json();
  if (response.status === 401) {
    body.auth = { type: "m.login.dummy", session: answer.session };
    response = await fetch(url, { method: "POST", body: JSON.stringify(body) });
    answer = await response.json();
  }
  if (response.status !== 200) throw new Error(`register on ${base}: ${JSON.stringify(answer)}`);
  return new User(base, answer.user_id, answer.access_token, answer.device_id);
}

/** Retry `probe` until it returns true or the convergence time runs out. */
export async function eventually(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + CONVERGE_MS;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`never happened: ${what}${lastError ? ` (last error: ${lastError})` : ""}`);
}
