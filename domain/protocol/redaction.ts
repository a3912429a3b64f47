/**
 * The redaction algorithm of every room version: what survives when an event is redacted.
 * Besides serving redacted events, it defines what signatures and reference hashes (event IDs)
 * cover, so every key list here must match the spec exactly.
 */
import { isJsonObject, type JsonObject } from "./json.ts";
import type { RoomVersion } from "./room_versions.ts";

// Top-level keys every room version keeps.
const KEPT_TOP_LEVEL = [
  "event_id",
  "type",
  "room_id",
  "sender",
  "state_key",
  "content",
  "hashes",
  "signatures",
  "depth",
  "prev_events",
  "auth_events",
  "origin_server_ts",
];

// Also kept in room versions 1-10; v11 (MSC2176/MSC3989) stopped protecting them.
const KEPT_TOP_LEVEL_BEFORE_V11 = ["origin", "membership", "prev_state"];

const POWER_LEVEL_KEYS = [
  "ban",
  "events",
  "events_default",
  "kick",
  "redact",
  "state_default",
  "users",
  "users_default",
];

/** The content keys an event type keeps when redacted in `version`. "all" keeps everything. */
export function keptContentKeys(type: string, version: RoomVersion): readonly string[] | "all" {
  switch (type) {
    case "m.room.member": {
      const keys = ["membership"];
      if (version.redactionKeepsAuthorisingUser) keys.push("join_authorised_via_users_server");
      // third_party_invite is trimmed to its `signed` key separately (see redactContent).
      return keys;
    }
    case "m.room.create":
      return version.updatedRedactionRules ? "all" : ["creator"];
    case "m.room.join_rules":
      return version.redactionKeepsJoinRulesAllow ? ["join_rule", "allow"] : ["join_rule"];
    case "m.room.power_levels":
      return version.updatedRedactionRules ? [...POWER_LEVEL_KEYS, "invite"] : POWER_LEVEL_KEYS;
    case "m.room.aliases":
      return version.redactionKeepsAliases ? ["aliases"] : [];
    case "m.room.history_visibility":
      return ["history_visibility"];
    case "m.room.redaction":
      return version.updatedRedactionRules ? ["redacts"] : [];
    default:
      return [];
  }
}

/** What redaction needs of an event; `Pdu` and `RoomEvent` both satisfy it. */
export type RedactableEvent = { type: string; content: object };

/**
 * Redact an event under `version`'s rules: a new object with only the protected top-level keys
 * and content keys. `unsigned` is dropped too (callers serving clients re-attach what they need).
 */
export function redactEvent<T extends RedactableEvent>(
  event: T,
  version: RoomVersion,
): T {
  const source = event as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of KEPT_TOP_LEVEL) {
    if (Object.hasOwn(source, key) && source[key] !== undefined) out[key] = source[key];
  }
  if (!version.updatedRedactionRules) {
    for (const key of KEPT_TOP_LEVEL_BEFORE_V11) {
      if (Object.hasOwn(source, key) && source[key] !== undefined) out[key] = source[key];
    }
  }
  out.content = redactContent(
    event.type,
    isJsonObject(event.content) ? event.content : {},
    version,
  );
  return out as T;
}

/** The redacted form of an event's content alone. */
export function redactContent(type: string, content: JsonObject, version: RoomVersion): JsonObject {
  const kept = keptContentKeys(type, version);
  if (kept === "all") return { ...content };
  const out: JsonObject = {};
  for (const key of kept) {
    if (Object.hasOwn(content, key)) out[key] = content[key];
  }
  if (type === "m.room.member" && version.updatedRedactionRules) {
    const invite = content.third_party_invite;
    // The spec only says `signed` is allowed; Synapse, the reference for what peers hash, keeps
    // an object third_party_invite (possibly empty) and drops a non-object one. Event IDs depend
    // on this choice, so we match it.
    if (isJsonObject(invite)) {
      out.third_party_invite = Object.hasOwn(invite, "signed") ? { signed: invite.signed } : {};
    }
  }
  return out;
}
