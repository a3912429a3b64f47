/**
 * The OAuth attack suite's server: the real assembly (`startTestServer`) listening on a loopback
 * port over real HTTP, its issuer (`TESSERA_PUBLIC_BASEURL`) set to that address, so redirects,
 * cookies and Origin checks are what a browser and a client would meet.
 */
import { FAST_HASHING } from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import { freePort } from "../main_process.ts";
import { jsonRequest } from "../json_request.ts";
import type { JsonResponse, RequestOptions } from "../routes/test_server.ts";

/** A listening server: its base URL, the in-process handle (deps, kv) and a JSON client. */
export interface ListeningServer {
  /** `http://127.0.0.1:<port>`, also the issuer without its trailing slash. */
  readonly baseUrl: string;
  readonly inner: Awaited<ReturnType<typeof startTestServer>>;
  /** A JSON request over HTTP (the token as a bearer). */
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  close(): Promise<void>;
}

/** Start the server on a free loopback port; `env` adds configuration variables. */
export async function startListeningServer(
  env: Record<string, string> = {},
): Promise<ListeningServer> {
  const port = freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const inner = await startTestServer({
    TESSERA_PUBLIC_BASEURL: baseUrl,
    TESSERA_RATE_LIMITS: "off",
    ...env,
  }, FAST_HASHING);
  const http = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, inner.app.fetch);
  return {
    baseUrl,
    inner,
    request: (method, path, options) =>
      jsonRequest((p, init) => fetch(`${baseUrl}${p}`, init), method, path, options),
    close: async () => {
      await http.shutdown();
      inner.close();
    },
  };
}

/** POST a form (`application/x-www-form-urlencoded`) and parse the JSON answer. */
export async function postForm(
  baseUrl: string,
  path: string,
  fields: Record<string, string>,
): Promise<JsonResponse> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams(fields),
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

/**
 * Every entry of the store as "key@versionstamp": what a refused request must leave unchanged
 * (a new key or a rewritten one both show).
 */
export async function kvSnapshot(kv: Deno.Kv): Promise<string[]> {
  const part = (p: Deno.KvKeyPart) =>
    p instanceof Uint8Array ? `b:${[...p].join(",")}` : `${typeof p}:${String(p)}`;
  const entries: string[] = [];
  for await (const entry of kv.list({ prefix: [] })) {
    entries.push(`${entry.key.map(part).join("/")}@${entry.versionstamp}`);
  }
  return entries.sort();
}

/** A PKCE verifier and its S256 challenge (RFC 7636 §4.2). */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(48)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** The client_uri of the test clients. */
export const CLIENT_URI = "https://example.com";

/** A registration body (a web client of CLIENT_URI) with `overrides`. */
export function registration(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    client_name: "Attack test client",
    client_uri: CLIENT_URI,
    redirect_uris: ["https://example.com/callback"],
    response_types: ["code"],
    grant_types: ["authorization_code", "refresh_token"],
    token_endpoint_auth_method: "none",
    ...overrides,
  };
}

/** Run `body` on a fresh listening server (`env` added), closing it afterwards. */
export async function withServer(
  body: (server: ListeningServer) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const server = await startListeningServer(env);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}
