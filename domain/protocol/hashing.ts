/**
 * Event hashes (server-server spec "Calculating the content hash" and "Calculating the reference
 * hash"). The content hash lets a receiver detect a tampered event whose signature still holds
 * over the redacted form; the reference hash is what event IDs are made of from room v3.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64Unpadded, tryDecodeBase64 } from "./base64.ts";
import { canonicalJsonBytes } from "./canonical_json.ts";
import { isJsonObject } from "./json.ts";
import { type RedactableEvent, redactEvent } from "./redaction.ts";
import type { RoomVersion } from "./room_versions.ts";

// Rooms v1-5 may hold numbers the strict grammar rejects; hash them as best we can.
function canonicalOptions(version: RoomVersion | undefined) {
  return { strict: version?.strictCanonicalJson ?? true };
}

/**
 * The unpadded base64 sha256 over the event without `unsigned`, `signatures` and `hashes`.
 * Pass the room version to relax canonical JSON for v1-5; without it the strict rules apply.
 */
export function computeContentHash(pdu: object, version?: RoomVersion): string {
  return encodeBase64Unpadded(sha256(contentHashInput(pdu, version)));
}

function contentHashInput(pdu: object, version: RoomVersion | undefined): Uint8Array {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu as Record<string, unknown>;
  return canonicalJsonBytes(rest, canonicalOptions(version));
}

/** A copy of the event with `hashes.sha256` set to its content hash. */
export function addContentHash<T extends object>(
  pdu: T,
  version?: RoomVersion,
): T & { hashes: { sha256: string } } {
  const sha = computeContentHash(pdu, version);
  const previous = (pdu as { hashes?: unknown }).hashes;
  return { ...pdu, hashes: { ...(isJsonObject(previous) ? previous : {}), sha256: sha } };
}

/** True when `hashes.sha256` matches the event's content; false when absent or uncomputable. */
export function checkContentHash(pdu: object, version?: RoomVersion): boolean {
  const hashes = (pdu as { hashes?: unknown }).hashes;
  if (!isJsonObject(hashes) || typeof hashes.sha256 !== "string") return false;
  // Compare bytes, not text, so padded or otherwise lenient base64 from a peer still matches.
  const claimed = tryDecodeBase64(hashes.sha256);
  if (claimed === undefined) return false;
  let actual: Uint8Array;
  try {
    actual = sha256(contentHashInput(pdu, version));
  } catch {
    return false;
  }
  return claimed.length === actual.length && claimed.every((b, i) => b === actual[i]);
}

/**
 * The raw sha256 reference hash: the event redacted under `version`'s rules, without
 * `signatures`, `unsigned` and `age_ts`, in canonical JSON.
 */
export function computeReferenceHash(pdu: RedactableEvent, version: RoomVersion): Uint8Array {
  const redacted = redactEvent(pdu, version) as Record<string, unknown>;
  // Redaction already drops age_ts and unsigned; signatures are the one kept key to remove.
  const { signatures: _s, unsigned: _u, age_ts: _a, ...rest } = redacted;
  return sha256(canonicalJsonBytes(rest, canonicalOptions(version)));
}
