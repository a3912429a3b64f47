/**
 * Which client endpoints a guest account may call (spec: "Guest access"). Everything else
 * answers 403 M_GUEST_ACCESS_FORBIDDEN, checked in `requireSession` before any handler runs, so
 * a new endpoint is closed to guests until it is listed here.
 *
 * The list is the spec's (room reads and previews, /sync and /events, joining and leaving,
 * sending messages, to-device messages, their display name, their devices and end-to-end keys),
 * plus what Synapse also opens to guests and what a client needs to run at all: whoami, logout,
 * capabilities, the TURN servers, joined rooms, room relations, key changes and signature
 * uploads, the room directory and third-party lookups.
 *
 * What a guest may do inside an allowed endpoint is the domain's business: joining only rooms
 * whose `m.room.guest_access` is `can_join` (domain/rooms/guest_access.ts), reading rooms they
 * are not in only when `world_readable` (the read pipeline's history visibility, as for anyone).
 */

interface GuestRule {
  method: string;
  path: RegExp;
  /** A further condition on the query string. */
  query?: (query: URLSearchParams) => boolean;
}

const ID = "[^/]+";
const rule = (method: string, path: string, query?: GuestRule["query"]): GuestRule => ({
  method,
  path: new RegExp(`^${path}$`),
  query,
});

const GUEST_RULES: GuestRule[] = [
  // Reading rooms: joined ones, and world_readable ones as previews.
  rule("GET", `/rooms/${ID}/state`),
  rule("GET", `/rooms/${ID}/state/${ID}(?:/${ID})?/?`),
  rule("GET", `/rooms/${ID}/event/${ID}`),
  rule("GET", `/rooms/${ID}/context/${ID}`),
  rule("GET", `/rooms/${ID}/messages`),
  rule("GET", `/rooms/${ID}/members`),
  rule("GET", `/rooms/${ID}/initialSync`),
  rule("GET", `/rooms/${ID}/relations/${ID}(?:/${ID}(?:/${ID})?)?`),
  rule("GET", "/sync"),
  // Only as room previews: the global event stream is a full account's (as in Synapse).
  rule("GET", "/events", (query) => query.has("room_id")),
  rule("GET", "/joined_rooms"),
  // Taking part.
  rule("POST", `/rooms/${ID}/join`),
  rule("POST", `/join/${ID}`),
  rule("POST", `/rooms/${ID}/leave`),
  rule("PUT", `/rooms/${ID}/send/m\\.room\\.message/${ID}`),
  rule("PUT", `/sendToDevice/${ID}/${ID}`),
  // Their own account.
  rule("GET", "/account/whoami"),
  rule("POST", "/logout"),
  rule("GET", `/profile/${ID}(?:/${ID})?`),
  rule("PUT", `/profile/${ID}/displayname`),
  rule("GET", "/devices"),
  rule("GET", `/devices/${ID}`),
  rule("PUT", `/devices/${ID}`),
  rule("GET", "/capabilities"),
  rule("GET", "/voip/turnServer"),
  // End-to-end encryption.
  rule("POST", "/keys/upload(?:/[^/]+)?"),
  rule("POST", "/keys/query"),
  rule("POST", "/keys/claim"),
  rule("GET", "/keys/changes"),
  rule("POST", "/keys/signatures/upload"),
  // Directories.
  rule("GET", "/publicRooms"),
  rule("POST", "/publicRooms"),
  rule("GET", `/thirdparty/${ID}(?:/${ID})?`),
  // Media a room shows (images, avatars): reads only, as Synapse serves guests authenticated media.
  rule("GET", `/media/(?:download|thumbnail)/${ID}/${ID}(?:/${ID})?`),
  rule("GET", "/media/config"),
];

/** The path below the client API root (`/_matrix/client/v3`, `/r0`, `/v1` or `/unstable`). */
function relativePath(path: string): string {
  return path.replace(/^\/_matrix\/client\/(?:v1|v3|r0|unstable)(?=\/)/, "");
}

/** Whether a guest may make this request (`url` as received). */
export function guestMayRequest(method: string, url: string): boolean {
  const { pathname, searchParams } = new URL(url);
  const path = relativePath(pathname);
  const verb = method === "HEAD" ? "GET" : method;
  return GUEST_RULES.some((r) =>
    r.method === verb && r.path.test(path) && (r.query?.(searchParams) ?? true)
  );
}
