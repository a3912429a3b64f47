/**
 * The room version registry: one record per stable room version (1 to 12) saying which
 * algorithms and rule variants it uses. Every version-dependent piece of the protocol core reads
 * these flags instead of comparing version strings.
 */

/** How an event ID is made. */
export type EventIdFormat =
  /** v1, v2: chosen by the origin server, `$opaque:server`. */
  | "server_chosen"
  /** v3: `$` + unpadded standard base64 of the reference hash. */
  | "reference_hash"
  /** v4+: `$` + unpadded URL-safe base64 of the reference hash. */
  | "reference_hash_url_safe";

/** The state resolution algorithm. */
export type StateResolutionAlgorithm = "v1" | "v2" | "v2.1";

/** What a room version needs. */
export interface RoomVersion {
  readonly id: string;
  readonly stable: boolean;
  readonly eventIdFormat: EventIdFormat;
  /** v1/v2 PDUs carry `event_id` and `[id, {sha256}]` tuples in prev/auth_events. */
  readonly eventRefsAreTuples: boolean;
  readonly stateResolution: StateResolutionAlgorithm;
  /** v5+: signing keys must be valid (valid_until_ts) when the event was sent. */
  readonly enforceKeyValidity: boolean;
  /** v1-5: the m.room.aliases auth rule (state_key must equal the sender's domain). */
  readonly specialCaseAliasesAuth: boolean;
  /** v1-2: the m.room.redaction auth rule (redact level or same event ID domain). */
  readonly specialCaseRedactionAuth: boolean;
  /** v6+: canonical JSON is strict (integers in ±(2^53-1), no floats). */
  readonly strictCanonicalJson: boolean;
  /** v6+: `notifications` is checked when power levels change. */
  readonly limitNotificationsPowerLevels: boolean;
  /** v7+: the `knock` join rule and membership. */
  readonly knockJoinRule: boolean;
  /** v8+: the `restricted` join rule. */
  readonly restrictedJoinRule: boolean;
  /** v10+: the `knock_restricted` join rule. */
  readonly knockRestrictedJoinRule: boolean;
  /** v10+: power level values must be integers, not strings. */
  readonly integerPowerLevels: boolean;
  /** v1-5: redaction keeps `m.room.aliases` content `aliases`. */
  readonly redactionKeepsAliases: boolean;
  /** v8+: redaction keeps `m.room.join_rules` content `allow`. */
  readonly redactionKeepsJoinRulesAllow: boolean;
  /** v9+: redaction keeps `m.room.member` content `join_authorised_via_users_server`. */
  readonly redactionKeepsAuthorisingUser: boolean;
  /**
   * v11+ (MSC2176, MSC3821, MSC3989): top-level origin/membership/prev_state dropped, create keeps
   * all content, redaction keeps `content.redacts`, power levels keep `invite`, member keeps
   * `third_party_invite.signed`.
   */
  readonly updatedRedactionRules: boolean;
  /** v1-10: `m.room.create` content carries `creator`; v11+ use the event's sender. */
  readonly createHasCreatorField: boolean;
  /** v11+: `m.room.redaction` carries `redacts` in content rather than at top level. */
  readonly redactsInContent: boolean;
  /** v12 (MSC4291): room ID is `!` + the create event's reference hash; create has no room_id. */
  readonly roomIdIsCreateEventHash: boolean;
  /** v12 (MSC4289): creators (sender + additional_creators) have infinite power. */
  readonly privilegedCreators: boolean;
}

const base: RoomVersion = {
  id: "1",
  stable: true,
  eventIdFormat: "server_chosen",
  eventRefsAreTuples: true,
  stateResolution: "v1",
  enforceKeyValidity: false,
  specialCaseAliasesAuth: true,
  specialCaseRedactionAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  knockJoinRule: false,
  restrictedJoinRule: false,
  knockRestrictedJoinRule: false,
  integerPowerLevels: false,
  redactionKeepsAliases: true,
  redactionKeepsJoinRulesAllow: false,
  redactionKeepsAuthorisingUser: false,
  updatedRedactionRules: false,
  createHasCreatorField: true,
  redactsInContent: false,
  roomIdIsCreateEventHash: false,
  privilegedCreators: false,
};

const v2: RoomVersion = { ...base, id: "2", stateResolution: "v2" };
const v3: RoomVersion = {
  ...v2,
  id: "3",
  eventIdFormat: "reference_hash",
  eventRefsAreTuples: false,
  specialCaseRedactionAuth: false,
};
const v4: RoomVersion = { ...v3, id: "4", eventIdFormat: "reference_hash_url_safe" };
const v5: RoomVersion = { ...v4, id: "5", enforceKeyValidity: true };
const v6: RoomVersion = {
  ...v5,
  id: "6",
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
  redactionKeepsAliases: false,
};
const v7: RoomVersion = { ...v6, id: "7", knockJoinRule: true };
const v8: RoomVersion = {
  ...v7,
  id: "8",
  restrictedJoinRule: true,
  redactionKeepsJoinRulesAllow: true,
};
const v9: RoomVersion = { ...v8, id: "9", redactionKeepsAuthorisingUser: true };
const v10: RoomVersion = {
  ...v9,
  id: "10",
  knockRestrictedJoinRule: true,
  integerPowerLevels: true,
};
const v11: RoomVersion = {
  ...v10,
  id: "11",
  updatedRedactionRules: true,
  createHasCreatorField: false,
  redactsInContent: true,
};
const v12: RoomVersion = {
  ...v11,
  id: "12",
  stateResolution: "v2.1",
  roomIdIsCreateEventHash: true,
  privilegedCreators: true,
};

const registry: ReadonlyMap<string, RoomVersion> = new Map(
  [base, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12].map((v) => [v.id, Object.freeze(v)]),
);

/** The version new rooms get unless the client asks for another. */
export const DEFAULT_ROOM_VERSION = "12";

/** Look up a room version; undefined when we do not support it. */
export function roomVersion(id: string): RoomVersion | undefined {
  return registry.get(id);
}

/** All supported room versions, oldest first. */
export function supportedRoomVersions(): RoomVersion[] {
  return [...registry.values()];
}
