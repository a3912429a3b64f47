/**
 * Time-limited TURN credentials (the "TURN REST API" scheme coturn's `use-auth-secret` checks):
 * username `expiry:userId`, password base64(HMAC-SHA1(shared secret, username)).
 */
import type { JsonObject } from "../protocol/json.ts";

/** What `GET /voip/turnServer` returns when TURN is configured. */
export async function turnCredentials(
  turn: { uris: readonly string[]; sharedSecret: string; ttlSeconds: number },
  userId: string,
  now: number,
): Promise<JsonObject> {
  const expiry = Math.floor(now / 1000) + turn.ttlSeconds;
  const username = `${expiry}:${userId}`;
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(turn.sharedSecret),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(username)));
  const password = btoa(String.fromCharCode(...mac));
  return { username, password, uris: [...turn.uris], ttl: turn.ttlSeconds };
}
