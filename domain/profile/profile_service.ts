/**
 * User profiles: the legacy `displayname`/`avatar_url` fields and v1.16 custom fields, with the
 * spec's limits, and propagation of a name or avatar change to the user's member events in
 * every joined room (a new join event, as Synapse does).
 */
import { badJson, forbidden, invalidParam, MatrixError, notFound } from "../errors.ts";
import type { JsonObject, JsonValue } from "../protocol/json.ts";
import type { AccountStore } from "../ports/account_store.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { ProfileFields, ProfileStore } from "../ports/profile_store.ts";
import type { LocalEventSender } from "../local_event_sender.ts";

/** What member events carry from a profile. */
export interface MemberProfile {
  displayname?: string;
  avatar_url?: string;
}

/** Reads the profile fields member events carry (used by the rooms area on join). */
export interface ProfileReader {
  /** The user's display name and avatar; `{}` when unset. */
  profile(userId: string): Promise<MemberProfile>;
}

/** The spec caps a profile under 64 KiB; a little less keeps it in one KV value (64 KiB). */
export const MAX_PROFILE_BYTES = 60_000;
/** Longest profile key in bytes. */
export const MAX_PROFILE_KEY_BYTES = 255;
/** Longest display name we accept, in characters (Synapse's limit). */
export const MAX_DISPLAYNAME_LENGTH = 256;
/** Longest avatar URL we accept. */
export const MAX_AVATAR_URL_LENGTH = 1000;

const KEY_PATTERN = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
const encoder = new TextEncoder();

/** Check a profile key name against the spec's grammar and length limit. */
export function checkProfileKey(key: string): void {
  if (encoder.encode(key).byteLength > MAX_PROFILE_KEY_BYTES) {
    throw new MatrixError("M_KEY_TOO_LARGE", 400, "Profile key is over 255 bytes");
  }
  if (!KEY_PATTERN.test(key)) throw invalidParam(`Invalid profile key '${key}'`);
}

/** Check a field's value for its key: names and timezones are strings, avatars mxc URIs. */
export function checkProfileValue(key: string, value: JsonValue): void {
  if (key === "displayname" || key === "m.tz") {
    if (typeof value !== "string") throw badJson(`'${key}' must be a string`);
    if (key === "displayname" && [...value].length > MAX_DISPLAYNAME_LENGTH) {
      throw badJson(`'displayname' is over ${MAX_DISPLAYNAME_LENGTH} characters`);
    }
  }
  if (key === "avatar_url") {
    if (typeof value !== "string") throw badJson("'avatar_url' must be a string");
    // Empty clears the avatar, as several clients send it.
    if (value !== "" && !value.startsWith("mxc://")) {
      throw badJson("'avatar_url' must be an mxc:// URI");
    }
    if (value.length > MAX_AVATAR_URL_LENGTH) throw badJson("'avatar_url' is too long");
  }
}

/** What the service is built from. */
export interface ProfileServiceDeps {
  store: ProfileStore;
  events: Pick<EventReader, "roomsOfUser" | "currentStateEventId" | "getEvent">;
  sender: Pick<LocalEventSender, "send">;
  serverName: string;
  /**
   * Accounts, so a local user who never set a profile reads as the registration default (the
   * localpart as display name) and one who does not exist as 404.
   */
  accounts?: Pick<AccountStore, "getAccount">;
  /**
   * Other servers' users' profiles, asked of their server (domain/federation/remote_queries.ts);
   * without it a remote user's profile is whatever this server holds, usually nothing (404).
   */
  remote?: { profile(userId: string, server: string, field?: string): Promise<JsonObject> };
}

/** Profile reads and writes, and their propagation to member events. */
export class ProfileService implements ProfileReader {
  /** Build over a store, the event reader and the local sender. */
  constructor(private readonly deps: ProfileServiceDeps) {}

  async profile(userId: string): Promise<MemberProfile> {
    const fields = await this.deps.store.get(userId);
    // A local user without a profile record yet gets the registration default, the localpart.
    if (fields === null && this.#isLocal(userId)) return defaultProfile(userId);
    return memberProfile(fields);
  }

  /** Several users' member profiles (user directory, member lists), defaults included. */
  async profiles(userIds: readonly string[]): Promise<Map<string, MemberProfile>> {
    const stored = await this.deps.store.getMany(userIds);
    const out = new Map<string, MemberProfile>();
    for (const userId of userIds) {
      const fields = stored.get(userId) ?? null;
      if (fields !== null) out.set(userId, memberProfile(fields));
      else if (this.#isLocal(userId)) out.set(userId, defaultProfile(userId));
    }
    return out;
  }

  /**
   * Every field of a user's profile; M_NOT_FOUND when the user has none. A local account that
   * never set one has the registration default (Synapse sets the localpart as display name at
   * registration), so clients do not take an existing user for a missing one.
   */
  async fullProfile(userId: string): Promise<ProfileFields> {
    const remote = this.#remoteServer(userId);
    if (remote !== undefined) return await this.deps.remote!.profile(userId, remote);
    const fields = await this.deps.store.get(userId);
    if (fields !== null) return fields;
    const { accounts } = this.deps;
    if (accounts && this.#isLocal(userId) && await accounts.getAccount(userId) !== null) {
      return defaultProfile(userId);
    }
    throw notFound("Profile not found");
  }

  /** One field; M_NOT_FOUND when the profile or field is missing. */
  async field(userId: string, key: string): Promise<JsonValue> {
    checkProfileKey(key);
    const remote = this.#remoteServer(userId);
    const fields = remote !== undefined
      ? await this.deps.remote!.profile(userId, remote, key)
      : await this.fullProfile(userId);
    if (!(key in fields)) throw notFound(`Profile field '${key}' not found`);
    return fields[key];
  }

  /**
   * Give a new local user their first profile (display name defaulting to the localpart);
   * does nothing when a profile exists. Registration calls it.
   */
  async initialiseProfile(userId: string, displayname?: string): Promise<void> {
    const initial = displayname === undefined ? defaultProfile(userId) : { displayname };
    await this.deps.store.update(userId, (current) => current ?? initial);
  }

  /** Set one field as `requester`; only the user themself may. Propagates name/avatar changes. */
  async setField(requester: string, userId: string, key: string, value: JsonValue): Promise<void> {
    this.#checkOwner(requester, userId);
    checkProfileKey(key);
    checkProfileValue(key, value);
    let changed = false;
    await this.deps.store.update(userId, (stored) => {
      // Changing one field of a never-set profile keeps the default display name.
      const current: ProfileFields = stored ?? defaultProfile(userId);
      const next: ProfileFields = { ...current, [key]: value };
      if (key === "avatar_url" && value === "") delete next[key];
      checkProfileSize(next);
      changed = JSON.stringify(current[key]) !== JSON.stringify(next[key]);
      return next;
    });
    if (changed && (key === "displayname" || key === "avatar_url")) {
      await this.#propagate(userId);
    }
  }

  /** Delete one field as `requester`; deleting a missing field succeeds. */
  async deleteField(requester: string, userId: string, key: string): Promise<void> {
    this.#checkOwner(requester, userId);
    checkProfileKey(key);
    let changed = false;
    await this.deps.store.update(userId, (stored) => {
      const current: ProfileFields = stored ?? defaultProfile(userId);
      const next: ProfileFields = { ...current };
      changed = key in next;
      delete next[key];
      return next;
    });
    if (changed && (key === "displayname" || key === "avatar_url")) {
      await this.#propagate(userId);
    }
  }

  #isLocal(userId: string): boolean {
    return userId.endsWith(`:${this.deps.serverName}`);
  }

  /** The server to ask for a remote user's profile; undefined for local users or without one. */
  #remoteServer(userId: string): string | undefined {
    if (this.deps.remote === undefined || this.#isLocal(userId)) return undefined;
    const colon = userId.indexOf(":");
    return colon > 0 ? userId.slice(colon + 1) : undefined;
  }

  #checkOwner(requester: string, userId: string): void {
    if (requester !== userId) throw forbidden("Cannot change another user's profile");
  }

  /** Re-send the user's join event with the new name and avatar in every joined room. */
  async #propagate(userId: string): Promise<void> {
    const profile = await this.profile(userId);
    const rooms = await this.deps.events.roomsOfUser(userId, ["join"]);
    await Promise.all(rooms.map(async ({ roomId }) => {
      try {
        const id = await this.deps.events.currentStateEventId(roomId, "m.room.member", userId);
        const current = id ? await this.deps.events.getEvent(id) : null;
        if (current?.pdu.content.membership !== "join") return;
        const content: JsonObject = { ...current.pdu.content };
        delete content.displayname;
        delete content.avatar_url;
        // It vouched for the join the server checked, not for copies (Synapse strips it too).
        delete content.join_authorised_via_users_server;
        if (profile.displayname !== undefined) content.displayname = profile.displayname;
        if (profile.avatar_url !== undefined) content.avatar_url = profile.avatar_url;
        await this.deps.sender.send({
          roomId,
          sender: userId,
          type: "m.room.member",
          stateKey: userId,
          content,
        });
      } catch (error) {
        // One room refusing (say, a power level change) must not undo the profile change.
        console.warn("profile: member event update failed", roomId, userId, error);
      }
    }));
  }
}

/** A local user's profile before they set anything: the localpart as display name. */
function defaultProfile(userId: string): ProfileFields & { displayname: string } {
  return { displayname: userId.slice(1, userId.indexOf(":")) };
}

function memberProfile(fields: ProfileFields | null): MemberProfile {
  const out: MemberProfile = {};
  if (typeof fields?.displayname === "string") out.displayname = fields.displayname;
  if (typeof fields?.avatar_url === "string") out.avatar_url = fields.avatar_url;
  return out;
}

function checkProfileSize(fields: ProfileFields): void {
  if (encoder.encode(JSON.stringify(fields)).byteLength >= MAX_PROFILE_BYTES) {
    throw new MatrixError(
      "M_PROFILE_TOO_LARGE",
      400,
      `The profile would exceed ${MAX_PROFILE_BYTES} bytes`,
    );
  }
}
