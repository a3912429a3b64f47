/**
 * `POST /rooms/{roomId}/upgrade`: a new room whose create event names its predecessor, the old
 * room's state copied over, a tombstone in the old room, the old room's power levels
 * restricted, and the local aliases and directory listing moved.
 */
import { forbidden, invalidParam, unsupportedRoomVersion } from "../errors.ts";
import { isValidUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { parsePowerLevels } from "../protocol/power_levels.ts";
import { roomVersion } from "../protocol/room_versions.ts";
import type { CommitMutation } from "../ports/event_store.ts";
import { RoomState } from "./room_state.ts";
import { isLocal, memberContent, type RoomServiceDeps } from "./room_services.ts";

/** State carried into the new room, in the order it is sent (power levels come first). */
const COPIED_STATE = [
  "m.room.join_rules",
  "m.room.history_visibility",
  "m.room.guest_access",
  "m.room.name",
  "m.room.topic",
  "m.room.avatar",
  "m.room.encryption",
  "m.room.server_acl",
  "m.room.canonical_alias",
];

/** Upgrades rooms to a new room version. */
export class RoomUpgrader {
  constructor(private readonly deps: RoomServiceDeps) {}

  /** Upgrade `roomId` to `newVersion`; returns the replacement room's ID. */
  async upgrade(
    userId: string,
    roomId: string,
    newVersion: string,
    additionalCreators: string[] = [],
  ): Promise<string> {
    const version = roomVersion(newVersion);
    if (!version) throw unsupportedRoomVersion(newVersion);
    const old = await RoomState.open(this.deps.store, roomId);
    if ((await old.membership(userId)) !== "join") throw forbidden("You are not in this room");
    if (!(await old.maySendState(userId, "m.room.tombstone"))) {
      throw forbidden("You may not upgrade this room");
    }
    for (const user of additionalCreators) {
      if (!isValidUserId(user)) throw invalidParam(`Invalid user ID ${JSON.stringify(user)}`);
    }
    await old.load([
      ["m.room.create", ""],
      ["m.room.power_levels", ""],
      ...COPIED_STATE.map(
        (t): [string, string] => [t, ""],
      ),
    ]);

    const oldCreate = (await old.content("m.room.create")) ?? {};
    const createContent: JsonObject = {};
    for (const key of ["type", "m.federate"]) {
      if (oldCreate[key] !== undefined) createContent[key] = oldCreate[key];
    }
    // The predecessor names the old room's last event: its tombstone where the new room's ID can
    // be chosen first (as Synapse orders it), so the tombstone can name the room before it
    // exists. A v12 room ID is its create event's hash, which cannot name an event that names
    // the room: there the last event before the upgrade (the spec lets the field go).
    const preassigned = version.roomIdIsCreateEventHash ? undefined : this.deps.sender.newRoomId();
    let lastEventId: string | undefined;
    if (preassigned !== undefined) {
      lastEventId = await this.#sendTombstone(old, userId, preassigned);
    } else {
      lastEventId = (await this.deps.store.roomHead(roomId))?.forwardExtremities[0];
    }
    createContent.predecessor = lastEventId
      ? { room_id: roomId, event_id: lastEventId }
      : { room_id: roomId };
    const creators = new Set([userId]);
    if (version.privilegedCreators) {
      for (const u of additionalCreators) creators.add(u);
      creators.delete(userId);
      if (creators.size > 0) createContent.additional_creators = [...creators];
      creators.add(userId);
    }

    // Power levels: the old ones, without new creators (v12) or with the upgrader able to
    // send the copied state (raised first, restored once the state is in).
    const oldPl = await old.content("m.room.power_levels");
    const finalPl: JsonObject = { ...(oldPl ?? {}) };
    const users: JsonObject = isJsonObject(finalPl.users) ? { ...finalPl.users } : {};
    if (version.privilegedCreators) { for (const c of creators) delete users[c]; }
    else if (old.version.privilegedCreators && !(userId in users)) users[userId] = 100;
    finalPl.users = users;
    let initialPl = finalPl;
    if (!version.privilegedCreators) {
      const levels = parsePowerLevels(finalPl, version);
      const own = levels.users.get(userId) ?? levels.usersDefault;
      const needed = Math.max(
        levels.ban,
        levels.events.get("m.room.power_levels") ?? levels.stateDefault,
        ...COPIED_STATE.map((t) => levels.events.get(t) ?? levels.stateDefault),
      );
      if (own < needed) initialPl = { ...finalPl, users: { ...users, [userId]: needed } };
    }

    const { roomId: newRoomId } = await this.deps.sender.createRoom({
      version: version.id,
      creator: userId,
      content: createContent,
      roomId: preassigned,
    });
    const send = (type: string, stateKey: string, content: JsonObject, sender = userId) =>
      this.deps.sender.send({ roomId: newRoomId, sender, type, stateKey, content });
    await send("m.room.member", userId, await memberContent(this.deps, userId, "join"));
    await send("m.room.power_levels", "", initialPl);
    for (const type of COPIED_STATE) {
      const content = await old.content(type);
      if (content && Object.keys(content).length > 0) await send(type, "", content);
    }
    for (const ban of await this.deps.store.members(roomId, ["ban"])) {
      await send("m.room.member", ban.userId, { membership: "ban" });
    }
    if (initialPl !== finalPl) await send("m.room.power_levels", "", finalPl);

    if (preassigned === undefined) await this.#sendTombstone(old, userId, newRoomId);
    await this.#retireOldRoom(old, userId, newRoomId);
    await this.#copyUserData(roomId, newRoomId);
    return newRoomId;
  }

  /** Each local member's own data about the old room, carried to the new one (best effort). */
  async #copyUserData(oldRoomId: string, newRoomId: string): Promise<void> {
    const copy = this.deps.copyUserDataOnUpgrade;
    if (!copy) return;
    for (const member of await this.deps.store.members(oldRoomId, ["join"])) {
      if (!isLocal(member.userId, this.deps.serverName)) continue;
      await copy(member.userId, oldRoomId, newRoomId).catch((error) => {
        console.warn("room upgrade: user data not copied", member.userId, newRoomId, error);
      });
    }
  }

  /** Send the old room's tombstone naming `newRoomId`; returns its event ID. */
  async #sendTombstone(old: RoomState, userId: string, newRoomId: string): Promise<string> {
    const sent = await this.deps.sender.send({
      roomId: old.roomId,
      sender: userId,
      type: "m.room.tombstone",
      stateKey: "",
      content: { body: "This room has been replaced", replacement_room: newRoomId },
    });
    return sent.eventId;
  }

  /**
   * Once the new room exists: move the old room's aliases and listing to it, and restrict who
   * may speak in the old room.
   */
  async #retireOldRoom(old: RoomState, userId: string, newRoomId: string): Promise<void> {
    const { directory, sender } = this.deps;
    const aliases = await directory.aliasesOfRoom(old.roomId);
    const moves: CommitMutation[] = [];
    for (const alias of aliases) {
      const record = await directory.resolveAlias(alias);
      if (!record) continue;
      moves.push(
        ...directory.deleteAliasMutations(record),
        ...directory.createAliasMutations({ ...record, roomId: newRoomId }).filter((m) =>
          m.op !== "check"
        ),
      );
    }
    if ((await directory.visibility(old.roomId)) === "public") {
      moves.push(
        ...directory.visibilityMutations(old.roomId, "private"),
        ...directory.visibilityMutations(newRoomId, "public"),
      );
    }
    // An alias changed meanwhile stays where its new owner put it.
    if (moves.length > 0 && !(await directory.commit(moves))) {
      console.warn("room upgrade: aliases changed meanwhile, not moved", old.roomId, newRoomId);
    }

    // Best effort from here: the upgrade has happened even if the user may not change these.
    const levels = await old.powerLevels();
    const restricted = Math.max(50, levels.usersDefault + 1);
    const pl = await old.content("m.room.power_levels");
    if (pl && (await old.maySendState(userId, "m.room.power_levels"))) {
      await sender.send({
        roomId: old.roomId,
        sender: userId,
        type: "m.room.power_levels",
        stateKey: "",
        content: { ...pl, events_default: restricted, invite: restricted },
      }).catch(() => undefined);
    }
    const canonical = await old.content("m.room.canonical_alias");
    if (
      canonical && Object.keys(canonical).length > 0 && isLocal(userId, this.deps.serverName) &&
      (await old.maySendState(userId, "m.room.canonical_alias"))
    ) {
      await sender.send({
        roomId: old.roomId,
        sender: userId,
        type: "m.room.canonical_alias",
        stateKey: "",
        content: {},
      }).catch(() => undefined);
    }
  }
}
