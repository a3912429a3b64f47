/** Small helpers shared by the real-client tests: waiting with a deadline, and naming failures. */
import * as sdk from "matrix-js-sdk";

/** Resolve when `check()` is truthy, polling every `intervalMs`; fail after `timeoutMs` with `what`. */
export async function waitUntil<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Describe an error from a client SDK as the request that failed: method, URL path, HTTP status
 * and errcode when the SDK kept them, so a report names the endpoint rather than a stack.
 */
export function describeClientError(error: unknown): string {
  const e = error as {
    message?: string;
    httpStatus?: number;
    errcode?: string;
    url?: string;
    data?: { errcode?: string; error?: string };
  };
  const parts: string[] = [];
  if (e?.url) {
    try {
      parts.push(new URL(e.url).pathname);
    } catch {
      parts.push(e.url);
    }
  }
  if (e?.httpStatus) parts.push(`HTTP ${e.httpStatus}`);
  const errcode = e?.errcode ?? e?.data?.errcode;
  if (errcode) parts.push(errcode);
  parts.push(e?.message ?? String(error));
  return parts.join(" ");
}

/** Run `fn`; if it throws, rethrow with `step` and the failed request spelled out. */
export async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new Error(`${name} failed: ${describeClientError(error)}`, { cause: error });
  }
}

/**
 * A `fetch` that remembers every request answered with an error status, for failure reports.
 * `base` makes the requests (e.g. one trusting a test CA); the global `fetch` by default.
 */
export function recordingFetch(failures: string[], base: typeof fetch = fetch): typeof fetch {
  return async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const method = request.method;
    const path = new URL(request.url).pathname;
    const res = await base(request);
    if (res.status >= 400) {
      let errcode = "";
      try {
        errcode = (await res.clone().json())?.errcode ?? "";
      } catch { /* not JSON */ }
      failures.push(`${method} ${path} -> ${res.status} ${errcode}`.trim());
    }
    return res;
  };
}

/**
 * `ignore` for a real-client test whose endpoints have not landed yet: true, unless
 * TESSERA_RUN_PENDING_CLIENT_TESTS=1 asks to run it anyway (to see how far it gets).
 */
export function pending(): boolean {
  return Deno.env.get("TESSERA_RUN_PENDING_CLIENT_TESTS") !== "1";
}

/**
 * Register `localpart` over plain HTTP the way interactive clients do: POST /register without
 * auth for the flows and a session, then again with m.login.dummy. Returns the user ID.
 */
export async function registerUser(
  baseUrl: string,
  localpart: string,
  password: string,
): Promise<string> {
  const url = `${baseUrl}/_matrix/client/v3/register`;
  const post = async (body: unknown) => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = { raw: text };
    }
    return { status: res.status, json };
  };
  const request = { username: localpart, password, inhibit_login: true };
  let res = await post(request);
  if (res.status === 401) {
    res = await post({ ...request, auth: { type: "m.login.dummy", session: res.json.session } });
  }
  if (res.status !== 200) {
    throw new Error(
      `POST /_matrix/client/v3/register -> ${res.status} ${res.json?.errcode ?? ""}: ` +
        JSON.stringify(res.json),
    );
  }
  return res.json.user_id;
}

/**
 * Start a client's sync loop as Element does and resolve once its first sync is processed (or
 * reject on a sync error). A large timeline limit keeps a burst of messages in one sync from
 * becoming a gap; detached pending events keep local echoes aside, so a timeline holds only the
 * server's events in the order sync delivered them. `options` override the start options (a
 * longer `pollTimeout`, another `filter`).
 */
export async function startSyncing(
  client: sdk.MatrixClient,
  userId: string,
  initialSyncLimit: number,
  options: Partial<sdk.IStartClientOpts> = {},
): Promise<void> {
  const ready = new Promise<void>((resolve, reject) => {
    const onSync = (state: sdk.SyncState, _prev: unknown, data?: sdk.SyncStateData) => {
      if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (state === sdk.SyncState.Error) {
        client.off(sdk.ClientEvent.Sync, onSync);
        reject(data?.error ?? new Error("sync error"));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
  });
  const filter = new sdk.Filter(userId);
  filter.setDefinition({ room: { timeline: { limit: 100 } } });
  await client.startClient({
    initialSyncLimit,
    filter,
    pendingEventOrdering: sdk.PendingEventOrdering.Detached,
    ...options,
  });
  await ready;
}
