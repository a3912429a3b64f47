/**
 * Reading a room's current state for the rooms and membership use cases: the version, single
 * state events and their contents, memberships and power levels, through the event store port.
 */
import { notFound } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import { type StateKey, stateKey } from "../protocol/events.ts";
import { parsePowerLevels, type PowerLevels, userPowerLevel } from "../protocol/power_levels.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { toStoredRoomEvent } from "../protocol/stored_events.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";

/** A read-only view of one room's current state, loading entries on demand. */
export class RoomState {
  readonly #events = new Map<StateKey, StoredEvent | null>();

  private constructor(
    private readonly store: EventReader,
    readonly roomId: string,
    readonly version: RoomVersion,
  ) {}

  /** Open a room's state; M_NOT_FOUND when this server has no such room. */
  static async open(store: EventReader, roomId: string): Promise<RoomState> {
    const head = await store.roomHead(roomId);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (!head || !version || head.lastPosition === 0) {
      throw notFound(`Room ${roomId} is not known to this server`);
    }
    return new RoomState(store, roomId, version);
  }

  /** Load several state entries in one read (entries already loaded are skipped). */
  async load(keys: readonly [type: string, stateKey: string][]): Promise<void> {
    const wanted = keys.map(([t, k]) => stateKey(t, k)).filter((k) => !this.#events.has(k));
    if (wanted.length === 0) return;
    const ids = await this.store.currentStateEventIds(this.roomId, wanted);
    const events = await this.store.getEvents([...ids.values()]);
    for (const key of wanted) {
      const id = ids.get(key);
      this.#events.set(key, id === undefined ? null : events.get(id) ?? null);
    }
  }

  /** The current state event for (type, state key); null when unset. */
  async event(type: string, key = ""): Promise<StoredEvent | null> {
    await this.load([[type, key]]);
    return this.#events.get(stateKey(type, key)) ?? null;
  }

  /** The content of a current state event; undefined when unset. */
  async content(type: string, key = ""): Promise<JsonObject | undefined> {
    return (await this.event(type, key))?.pdu.content;
  }

  /** A user's current membership ("join", "invite", "leave", "ban", "knock") or undefined. */
  async membership(userId: string): Promise<string | undefined> {
    const membership = (await this.content("m.room.member", userId))?.membership;
    return typeof membership === "string" ? membership : undefined;
  }

  /** The room's parsed power levels (defaults when unset). */
  async powerLevels(): Promise<PowerLevels> {
    return parsePowerLevels(await this.content("m.room.power_levels"), this.version);
  }

  /** A user's power level, creators included (infinite in v12). */
  async userLevel(userId: string): Promise<number> {
    await this.load([["m.room.power_levels", ""], ["m.room.create", ""]]);
    const pl = await this.event("m.room.power_levels");
    const create = await this.event("m.room.create");
    return userPowerLevel(
      userId,
      pl ? toStoredRoomEvent(pl, this.version) : undefined,
      create ? toStoredRoomEvent(create, this.version) : undefined,
      this.version,
    );
  }

  /** Whether the user may send a state event of `type` under the current power levels. */
  async maySendState(userId: string, type: string): Promise<boolean> {
    const levels = await this.powerLevels();
    const needed = levels.events.get(type) ?? levels.stateDefault;
    return (await this.userLevel(userId)) >= needed;
  }

  /** The join rule ("public", "invite", "knock", "restricted", ...); "invite" when unset. */
  async joinRule(): Promise<string> {
    const rule = (await this.content("m.room.join_rules"))?.join_rule;
    return typeof rule === "string" ? rule : "invite";
  }
}
