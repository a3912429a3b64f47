/**
 * The vocabulary the auth rule modules share: the decision type, the injected options, the
 * per-check context and small state readers. Kept apart so the rule modules do not import each
 * other in a cycle.
 */
import type { JsonObject } from "./json.ts";
import { type RoomEvent, type StateKey, stateKey } from "./events.ts";
import type { PowerLevels } from "./power_levels.ts";
import type { RoomVersion } from "./room_versions.ts";

/** The outcome of the auth rules for one event; `reason` is short and stable enough to assert on. */
export type AuthDecision = { allowed: true } | { allowed: false; reason: string };

/** The state an event is checked against (its auth events, or the state before it). */
export type AuthStateLookup = (key: StateKey) => RoomEvent | undefined;

/**
 * Checks one signature of a third-party invite's `signed` block: `signatures[serverName][keyId]`
 * against the unpadded base64 Ed25519 `publicKey` from the m.room.third_party_invite event.
 */
export type ThirdPartyInviteVerifier = (
  signed: JsonObject,
  serverName: string,
  keyId: string,
  publicKey: string,
  version: RoomVersion,
) => boolean;

/** What callers may inject into `checkEventAuth`. */
export interface AuthOptions {
  /**
   * The room's m.room.create event. v12 auth events never contain it (the room ID names it);
   * when absent it is read from the auth state under ("m.room.create", "").
   */
  createEvent?: RoomEvent;
  /** Verifies third-party invite signatures; defaults to Ed25519 over canonical JSON. */
  verifyThirdPartyInviteSignature?: ThirdPartyInviteVerifier;
  /**
   * v8+: whether the event carries a valid signature from `serverName`, for the
   * join_authorised_via_users_server rule. Omit when signatures were checked on receipt.
   */
  isSignedBy?: (event: RoomEvent, serverName: string) => boolean;
}

/** Everything the rules read while checking one event, computed once per check. */
export interface AuthContext {
  readonly event: RoomEvent;
  readonly authState: AuthStateLookup;
  readonly version: RoomVersion;
  readonly options: AuthOptions;
  readonly createEvent: RoomEvent;
  readonly powerLevelsEvent: RoomEvent | undefined;
  readonly levels: PowerLevels;
  readonly senderLevel: number;
}

/** The shared "allowed" decision; frozen so the hot path allocates nothing when it passes. */
export const ALLOWED: AuthDecision = Object.freeze({ allowed: true });

/** A rejection with its reason. */
export function deny(reason: string): AuthDecision {
  return { allowed: false, reason };
}

/** State key of the create event. */
export const CREATE_KEY: StateKey = stateKey("m.room.create", "");
/** State key of the power levels event. */
export const POWER_LEVELS_KEY: StateKey = stateKey("m.room.power_levels", "");
/** State key of the join rules event. */
export const JOIN_RULES_KEY: StateKey = stateKey("m.room.join_rules", "");

/** The server name of a user, room (v1-11) or event (v1-2) ID: everything after the first ':'. */
export function serverNameOf(id: string): string {
  const colon = id.indexOf(":");
  return colon < 0 ? "" : id.slice(colon + 1);
}

/** A user's current membership in the auth state; undefined when they have no member event. */
export function membershipOf(authState: AuthStateLookup, userId: string): string | undefined {
  const membership = authState(stateKey("m.room.member", userId))?.content.membership;
  return typeof membership === "string" ? membership : undefined;
}

/**
 * The room's join rule. With no m.room.join_rules event we read "invite", as Synapse and ruma
 * do, so that rooms created without one still accept invited users rather than diverging.
 */
export function joinRuleOf(authState: AuthStateLookup): string {
  const rule = authState(JOIN_RULES_KEY)?.content.join_rule;
  return typeof rule === "string" ? rule : "invite";
}

/** A power level for a reason string; v12 creators read as "infinite" rather than "Infinity". */
export function formatLevel(level: number): string {
  return level === Infinity ? "infinite" : String(level);
}

/** Quote untrusted text for a reason, cut short so a huge value cannot flood logs. */
export function quote(text: unknown): string {
  const s = typeof text === "string" ? text : JSON.stringify(text) ?? String(text);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
