/**
 * Auth rules for m.room.power_levels: the content must be well formed for the room version, and a
 * sender may only change levels that are, and stay, within their own power.
 */
import {
  ALLOWED,
  type AuthContext,
  type AuthDecision,
  deny,
  formatLevel,
  quote,
} from "./auth_context.ts";
import { isValidUserId } from "./identifiers.ts";
import { isJsonObject, type JsonObject } from "./json.ts";
import {
  isRoomCreator,
  NAMED_POWER_LEVELS,
  parsePowerLevels,
  parsePowerLevelValue,
} from "./power_levels.ts";
import type { RoomEvent } from "./events.ts";
import type { RoomVersion } from "./room_versions.ts";

/**
 * Why power levels content is malformed for the version, or undefined: v10+ every level must be
 * an integer; always, `users` maps valid user IDs to levels; v12, creators may not be listed.
 */
export function powerLevelsContentProblem(
  content: JsonObject,
  version: RoomVersion,
  createEvent: RoomEvent | undefined,
): string | undefined {
  if (version.integerPowerLevels) {
    for (const name of NAMED_POWER_LEVELS) {
      if (Object.hasOwn(content, name) && !Number.isInteger(content[name])) {
        return `${name} is not an integer`;
      }
    }
    for (const name of ["events", "notifications"] as const) {
      if (!Object.hasOwn(content, name)) continue;
      const map = content[name];
      if (!isJsonObject(map)) return `${name} is not an object`;
      for (const key in map) {
        if (!Number.isInteger(map[key])) return `${name} level for ${quote(key)} is not an integer`;
      }
    }
  }
  if (!Object.hasOwn(content, "users")) return undefined;
  const users = content.users;
  if (!isJsonObject(users)) return "users is not an object";
  for (const userId in users) {
    if (!isValidUserId(userId)) return `users key ${quote(userId)} is not a valid user ID`;
    // v1-9 accept integer strings (and v1-5 floats); v10+ only integers: parse says which.
    if (parsePowerLevelValue(users[userId], version) === undefined) {
      return `users level for ${quote(userId)} is not an integer`;
    }
    if (version.privilegedCreators && isRoomCreator(userId, createEvent, version)) {
      return `room creator ${quote(userId)} cannot be listed in users`;
    }
  }
  return undefined;
}

/** Rules for m.room.power_levels after the generic send-level checks have passed. */
export function checkPowerLevelsEvent(ctx: AuthContext): AuthDecision {
  const { event, version, powerLevelsEvent, senderLevel } = ctx;
  const content = event.content;
  const problem = powerLevelsContentProblem(content, version, ctx.createEvent);
  if (problem !== undefined) return deny(problem);
  if (powerLevelsEvent === undefined) return ALLOWED;
  const previous = powerLevelsEvent.content;
  const sender = formatLevel(senderLevel);

  // Named levels compare as written: adding or removing one counts as a change even if the
  // implied default is the same, as the rule speaks of properties "added, changed or removed".
  for (const name of NAMED_POWER_LEVELS) {
    const before = parsePowerLevelValue(previous[name], version);
    const after = parsePowerLevelValue(content[name], version);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) {
      return deny(`sender's power level ${sender} is below the current ${name} level ${before}`);
    }
    if (after !== undefined && after > senderLevel) {
      return deny(`new ${name} level ${after} is above the sender's power level ${sender}`);
    }
  }

  const oldLevels = parsePowerLevels(previous, version);
  const newLevels = parsePowerLevels(content, version);
  const mapProblem = mapChangeProblem("events", oldLevels.events, newLevels.events, senderLevel) ??
    (version.limitNotificationsPowerLevels
      ? mapChangeProblem(
        "notifications",
        oldLevels.notifications,
        newLevels.notifications,
        senderLevel,
      )
      : undefined);
  if (mapProblem !== undefined) return deny(mapProblem);

  for (const [userId, before] of oldLevels.users) {
    if (userId === event.sender || newLevels.users.get(userId) === before) continue;
    if (before >= senderLevel) {
      return deny(
        `sender's power level ${sender} is not above the current level ${before} of ${
          quote(userId)
        }`,
      );
    }
  }
  for (const [userId, after] of newLevels.users) {
    if (oldLevels.users.get(userId) === after) continue;
    if (after > senderLevel) {
      return deny(
        `new level ${after} for ${quote(userId)} is above the sender's power level ${sender}`,
      );
    }
  }
  return ALLOWED;
}

/** The events/notifications rules: changed or removed entries, then added or changed ones. */
function mapChangeProblem(
  name: string,
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  senderLevel: number,
): string | undefined {
  const sender = formatLevel(senderLevel);
  for (const [key, level] of before) {
    if (after.get(key) === level) continue;
    if (level > senderLevel) {
      return `sender's power level ${sender} is below the current ${name} level ${level} for ${
        quote(key)
      }`;
    }
  }
  for (const [key, level] of after) {
    if (before.get(key) === level) continue;
    if (level > senderLevel) {
      return `new ${name} level ${level} for ${
        quote(key)
      } is above the sender's power level ${sender}`;
    }
  }
  return undefined;
}
