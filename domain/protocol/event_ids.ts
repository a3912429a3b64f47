/**
 * Event IDs and v12 room IDs. Rooms v1/v2 carry an ID the origin server chose; from v3 the ID is
 * the event's reference hash (standard base64 in v3, URL-safe from v4), so nobody can forge it.
 */
import { encodeBase64Unpadded, encodeBase64UrlUnpadded } from "./base64.ts";
import { badJson } from "../errors.ts";
import { roomIdFromCreateEventId } from "./events.ts";
import { computeReferenceHash } from "./hashing.ts";
import type { RedactableEvent } from "./redaction.ts";
import type { RoomVersion } from "./room_versions.ts";

/** The event ID of a PDU: carried in v1/v2, `$` + its reference hash from v3. */
export function computeEventId(
  pdu: RedactableEvent & { event_id?: unknown },
  version: RoomVersion,
): string {
  switch (version.eventIdFormat) {
    case "server_chosen":
      if (typeof pdu.event_id !== "string") {
        throw badJson(`Events in room version ${version.id} must carry an event_id`);
      }
      return pdu.event_id;
    case "reference_hash":
      return "$" + encodeBase64Unpadded(computeReferenceHash(pdu, version));
    case "reference_hash_url_safe":
      return "$" + encodeBase64UrlUnpadded(computeReferenceHash(pdu, version));
  }
}

const OPAQUE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * A fresh `$opaque:server` event ID for a local event in a v1/v2 room. The opaque part is
 * alphanumeric so the ID needs no escaping in URLs.
 */
export function makeServerChosenEventId(serverName: string): string {
  let opaque = "";
  while (opaque.length < 24) {
    for (const byte of crypto.getRandomValues(new Uint8Array(32))) {
      // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
      if (byte < 248 && opaque.length < 24) opaque += OPAQUE_ALPHABET[byte % 62];
    }
  }
  return `$${opaque}:${serverName}`;
}

/**
 * The room ID a create event belongs to. v12: `!` + the create event's URL-safe reference
 * hash (the create event carries no room_id); earlier versions: its `room_id`.
 */
export function roomIdForCreateEvent(
  pdu: RedactableEvent & { room_id?: unknown; event_id?: unknown },
  version: RoomVersion,
): string {
  if (version.roomIdIsCreateEventHash) {
    return roomIdFromCreateEventId(computeEventId(pdu, version));
  }
  if (typeof pdu.room_id !== "string") throw badJson("Create event has no room_id");
  return pdu.room_id;
}

// sha256 is 32 bytes: 43 unpadded base64 characters.
const STANDARD_HASH_ID = /^\$[A-Za-z0-9+/]{43}$/;
const URL_SAFE_HASH_ID = /^\$[A-Za-z0-9_-]{43}$/;

/** True when `id` has the shape event IDs take in `version` (no check that it is the right hash). */
export function eventIdMatchesFormat(id: string, version: RoomVersion): boolean {
  switch (version.eventIdFormat) {
    case "server_chosen": {
      // `$opaque:server`, at most 255 bytes like every Matrix identifier.
      const colon = id.indexOf(":");
      return id.startsWith("$") && colon > 1 && colon < id.length - 1 &&
        new TextEncoder().encode(id).length <= 255;
    }
    case "reference_hash":
      return STANDARD_HASH_ID.test(id);
    case "reference_hash_url_safe":
      return URL_SAFE_HASH_ID.test(id);
  }
}
