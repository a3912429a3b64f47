/**
 * The opaque tokens clients and sync see. A sync token wraps a KV versionstamp (one clock for
 * every stream); a timeline token wraps a log position boundary within a room.
 */
import { invalidParam } from "../domain/errors.ts";

const VERSIONSTAMP = /^[0-9a-f]{20}$/;

/** Sync token for a commit versionstamp. */
export function syncToken(versionstamp: string): string {
  return `s${versionstamp}`;
}

/** The versionstamp inside a sync token; throws M_INVALID_PARAM for anything else. */
export function parseSyncToken(token: string): string {
  const versionstamp = token.slice(1);
  if (token[0] !== "s" || !VERSIONSTAMP.test(versionstamp)) {
    throw invalidParam("Invalid sync token");
  }
  return versionstamp;
}

/** Timeline token for the boundary just below `position`. */
export function timelineToken(position: number): string {
  return `t${position}`;
}

/** The position inside a timeline token; throws M_INVALID_PARAM for anything else. */
export function parseTimelineToken(token: string): number {
  const body = token.slice(1);
  if (token[0] !== "t" || !/^-?\d{1,15}$/.test(body)) {
    throw invalidParam("Invalid pagination token");
  }
  return Number(body);
}
