/**
 * Power levels: reading `m.room.power_levels` content with the spec's defaults and each room
 * version's number rules, and working out a user's level (room creators included). The auth
 * rules, state resolution (sorting by sender power) and the client API all read levels here.
 */
import { isJsonObject, type JsonObject } from "./json.ts";
import { type RoomEvent, type StateKey, stateKey } from "./events.ts";
import type { RoomVersion } from "./room_versions.ts";

/** m.room.power_levels content with defaults applied; maps hold only the valid entries. */
export interface PowerLevels {
  readonly usersDefault: number;
  readonly eventsDefault: number;
  readonly stateDefault: number;
  readonly ban: number;
  readonly kick: number;
  readonly redact: number;
  readonly invite: number;
  readonly events: ReadonlyMap<string, number>;
  readonly notifications: ReadonlyMap<string, number>;
  readonly users: ReadonlyMap<string, number>;
}

/** The top-level integer properties of power levels content, in the spec's order. */
export const NAMED_POWER_LEVELS = [
  "users_default",
  "events_default",
  "state_default",
  "ban",
  "redact",
  "kick",
  "invite",
] as const;

/** One of the top-level integer properties of power levels content. */
export type NamedPowerLevel = typeof NAMED_POWER_LEVELS[number];

/** Spec defaults, which also apply when the room has no power levels event at all. */
export const DEFAULT_NAMED_POWER_LEVELS: Readonly<Record<NamedPowerLevel, number>> = Object.freeze({
  users_default: 0,
  events_default: 0,
  state_default: 50,
  ban: 50,
  redact: 50,
  kick: 50,
  invite: 0,
});

/** Level for a `notifications` key (such as `room`) that the content does not set. */
export const DEFAULT_NOTIFICATION_POWER_LEVEL = 50;

/** Level of the room creator in v1-11 when the room has no power levels event. */
export const CREATOR_DEFAULT_POWER_LEVEL = 100;

/** v12 (MSC4289): creators outrank everyone; Infinity compares above any integer level. */
export const CREATOR_POWER_LEVEL = Infinity;

const EMPTY_MAP: ReadonlyMap<string, number> = new Map();

/** The levels of a room with no power levels event (creators are handled by userPowerLevel). */
export const DEFAULT_POWER_LEVELS: PowerLevels = Object.freeze({
  usersDefault: 0,
  eventsDefault: 0,
  stateDefault: 50,
  ban: 50,
  kick: 50,
  redact: 50,
  invite: 0,
  events: EMPTY_MAP,
  notifications: EMPTY_MAP,
  users: EMPTY_MAP,
});

// Optional sign, digits, whitespace around: the v1-9 "stringy" power level format.
const INTEGER_STRING = /^\s*[+-]?\d+\s*$/;

/**
 * Read one power level value under the version's rules: integers always; in v1-9 also strings
 * holding an integer; in v1-5 (non-strict canonical JSON) also floats, truncated. Else undefined.
 */
export function parsePowerLevelValue(value: unknown, version: RoomVersion): number | undefined {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value + 0; // normalise -0
    if (!version.integerPowerLevels && !version.strictCanonicalJson && Number.isFinite(value)) {
      return Math.trunc(value) + 0;
    }
    return undefined;
  }
  if (typeof value === "string" && !version.integerPowerLevels && INTEGER_STRING.test(value)) {
    const parsed = Number(value.trim());
    return Number.isFinite(parsed) ? parsed + 0 : undefined;
  }
  return undefined;
}

/** The three ways versions read numbers: 0 = v1-5 (floats too), 1 = v6-9 (strings), 2 = v10+. */
function parseMode(version: RoomVersion): 0 | 1 | 2 {
  if (version.integerPowerLevels) return 2;
  return version.strictCanonicalJson ? 1 : 0;
}

// State resolution reads the same few power levels events thousands of times: parse each once.
const parsedCache: WeakMap<JsonObject, PowerLevels>[] = [
  new WeakMap(),
  new WeakMap(),
  new WeakMap(),
];

function levelMap(value: unknown, version: RoomVersion): ReadonlyMap<string, number> {
  if (!isJsonObject(value)) return EMPTY_MAP;
  let map: Map<string, number> | undefined;
  for (const key in value) {
    const level = parsePowerLevelValue(value[key], version);
    if (level === undefined) continue;
    (map ??= new Map()).set(key, level);
  }
  return map ?? EMPTY_MAP;
}

function namedLevel(content: JsonObject, name: NamedPowerLevel, version: RoomVersion): number {
  return parsePowerLevelValue(content[name], version) ?? DEFAULT_NAMED_POWER_LEVELS[name];
}

/** Parse power levels content, applying defaults; invalid values fall back to the default. */
export function parsePowerLevels(
  content: JsonObject | undefined,
  version: RoomVersion,
): PowerLevels {
  if (content === undefined) return DEFAULT_POWER_LEVELS;
  const cache = parsedCache[parseMode(version)];
  const cached = cache.get(content);
  if (cached) return cached;
  const levels: PowerLevels = Object.freeze({
    usersDefault: namedLevel(content, "users_default", version),
    eventsDefault: namedLevel(content, "events_default", version),
    stateDefault: namedLevel(content, "state_default", version),
    ban: namedLevel(content, "ban", version),
    kick: namedLevel(content, "kick", version),
    redact: namedLevel(content, "redact", version),
    invite: namedLevel(content, "invite", version),
    events: levelMap(content.events, version),
    notifications: levelMap(content.notifications, version),
    users: levelMap(content.users, version),
  });
  cache.set(content, levels);
  return levels;
}

/** The parsed levels of a power levels event, or the defaults when there is none. */
export function powerLevelsOf(event: RoomEvent | undefined, version: RoomVersion): PowerLevels {
  return parsePowerLevels(event?.content, version);
}

/**
 * Whether `userId` is a room creator: v1-10 the create content's `creator`, v11 the create
 * event's sender, v12 the sender or anyone in `additional_creators`.
 */
export function isRoomCreator(
  userId: string,
  createEvent: RoomEvent | undefined,
  version: RoomVersion,
): boolean {
  if (createEvent === undefined) return false;
  if (version.createHasCreatorField) return createEvent.content.creator === userId;
  if (createEvent.sender === userId) return true;
  if (!version.privilegedCreators) return false;
  const additional = createEvent.content.additional_creators;
  return Array.isArray(additional) && additional.includes(userId);
}

/** The room creators in order: the creator (v1-11), or sender then additional_creators (v12). */
export function roomCreators(createEvent: RoomEvent, version: RoomVersion): string[] {
  if (version.createHasCreatorField) {
    const creator = createEvent.content.creator;
    return typeof creator === "string" ? [creator] : [];
  }
  const creators = [createEvent.sender];
  const additional = createEvent.content.additional_creators;
  if (version.privilegedCreators && Array.isArray(additional)) {
    for (const user of additional) {
      if (typeof user === "string" && !creators.includes(user)) creators.push(user);
    }
  }
  return creators;
}

/**
 * A user's power level. v12 creators have CREATOR_POWER_LEVEL (Infinity) whatever the power
 * levels say; otherwise `users` or `users_default`; with no power levels event, v1-11 creators
 * have 100 and everyone else 0.
 */
export function userPowerLevel(
  userId: string,
  powerLevelsEvent: RoomEvent | undefined,
  createEvent: RoomEvent | undefined,
  version: RoomVersion,
): number {
  if (version.privilegedCreators && isRoomCreator(userId, createEvent, version)) {
    return CREATOR_POWER_LEVEL;
  }
  if (powerLevelsEvent !== undefined) {
    const levels = parsePowerLevels(powerLevelsEvent.content, version);
    return levels.users.get(userId) ?? levels.usersDefault;
  }
  return isRoomCreator(userId, createEvent, version) ? CREATOR_DEFAULT_POWER_LEVEL : 0;
}

/** The level needed to send an event: its `events` entry, else state_default or events_default. */
export function requiredPowerLevelForEvent(
  type: string,
  isState: boolean,
  levels: PowerLevels,
): number {
  return levels.events.get(type) ?? (isState ? levels.stateDefault : levels.eventsDefault);
}

/** The level needed for a `notifications` key such as `room` (default 50). */
export function notificationPowerLevel(key: string, levels: PowerLevels): number {
  return levels.notifications.get(key) ?? DEFAULT_NOTIFICATION_POWER_LEVEL;
}

const CREATE_KEY: StateKey = stateKey("m.room.create", "");
const POWER_LEVELS_KEY: StateKey = stateKey("m.room.power_levels", "");

/**
 * The power level of an event's sender in the given state (e.g. the event's auth events), as
 * state resolution sorts by it. In v12 pass the room's create event, which auth events omit.
 */
export function senderPowerLevel(
  event: RoomEvent,
  state: (key: StateKey) => RoomEvent | undefined,
  version: RoomVersion,
  createEvent: RoomEvent | undefined = state(CREATE_KEY),
): number {
  return userPowerLevel(event.sender, state(POWER_LEVELS_KEY), createEvent, version);
}
