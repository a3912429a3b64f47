/**
 * The tests' one JSON client: what `startTestServer().request` does over the in-process app,
 * the process harnesses do over HTTP, through the same code.
 */
import type { JsonResponse, RequestOptions } from "./routes/test_server.ts";

/**
 * A JSON request through `fetcher` (a server's fetch or an in-process app's `request`): the
 * token as a bearer, a body sent as JSON unless it is a string, and the answer parsed as JSON
 * (or left as text when it is not JSON, or null when empty).
 */
export async function jsonRequest(
  fetcher: (path: string, init: RequestInit) => Response | Promise<Response>,
  method: string,
  path: string,
  { body, token, headers = {} }: RequestOptions = {},
): Promise<JsonResponse> {
  const all: Record<string, string> = { ...headers };
  if (token) all.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === "string" ? body : JSON.stringify(body);
    all["content-type"] = "application/json";
  }
  const res = await fetcher(path, { method, headers: all, body: payload });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}
