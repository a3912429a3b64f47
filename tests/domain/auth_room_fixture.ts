/**
 * Small rooms for auth rule tests: events are plain JSON objects, state is a map, and every event
 * is checked against the state before it with the real `checkEventAuth`.
 */
import assert from "node:assert/strict";
import {
  type AuthDecision,
  type AuthOptions,
  checkEventAuth,
} from "../../domain/protocol/auth_rules.ts";
import {
  type RoomEvent,
  roomIdFromCreateEventId,
  type StateKey,
  stateKey,
} from "../../domain/protocol/events.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { type RoomVersion, roomVersion } from "../../domain/protocol/room_versions.ts";

/** The users our rooms use; their servers differ so domain rules can be tested. */
export const ALICE = "@alice:a.test";
/** A second user on another server. */
export const BOB = "@bob:b.test";
/** A third user. */
export const CAROL = "@carol:c.test";
/** A fourth user, on alice's server. */
export const DAVE = "@dave:a.test";

/** Look up a supported room version, failing the test if it is unknown. */
export function version(id: string): RoomVersion {
  const found = roomVersion(id);
  assert.ok(found, `room version ${id}`);
  return found;
}

/** Fields of an event under test; the room fills in the rest. */
export interface EventFields {
  type: string;
  sender: string;
  state_key?: string;
  content?: JsonObject;
  prev_events?: string[];
  redacts?: string;
  event_id?: string;
  room_id?: string;
}

/** Options for `TestRoom`. */
export interface TestRoomOptions {
  creator?: string;
  /** Extra create content (e.g. additional_creators, m.federate). */
  createContent?: JsonObject;
}

/** A room under construction: a create event, then events checked against the current state. */
export class TestRoom {
  readonly version: RoomVersion;
  readonly roomId: string;
  readonly create: RoomEvent;
  readonly state = new Map<StateKey, RoomEvent>();
  #counter = 0;
  #last: string;

  /** Start a room of `versionId` whose create event is sent by `creator`. */
  constructor(versionId: string, options: TestRoomOptions = {}) {
    this.version = version(versionId);
    const creator = options.creator ?? ALICE;
    const content: JsonObject = { room_version: versionId, ...options.createContent };
    if (this.version.createHasCreatorField) content.creator = creator;
    let eventId: string;
    if (this.version.roomIdIsCreateEventHash) {
      // 43 URL-safe characters, like a real reference hash.
      eventId = `$${"c".repeat(33)}${versionId.padStart(10, "0")}`;
      this.roomId = roomIdFromCreateEventId(eventId);
    } else {
      eventId = this.nextId(creator);
      this.roomId = `!room:${serverOf(creator)}`;
    }
    this.create = {
      event_id: eventId,
      room_id: this.roomId,
      sender: creator,
      type: "m.room.create",
      state_key: "",
      content,
      origin_server_ts: 0,
      prev_events: [],
      auth_events: [],
    };
    this.state.set(stateKey("m.room.create", ""), this.create);
    this.#last = eventId;
  }

  /** A fresh event ID: `$n:server` in v1-2 (server-chosen), an opaque hash-like ID later. */
  nextId(sender: string): string {
    this.#counter++;
    return this.version.eventIdFormat === "server_chosen"
      ? `$${this.#counter}:${serverOf(sender)}`
      : `$event${String(this.#counter).padStart(38, "0")}`;
  }

  /** Build an event in this room (not yet checked or applied). */
  event(fields: EventFields): RoomEvent {
    const event: RoomEvent = {
      event_id: fields.event_id ?? this.nextId(fields.sender),
      room_id: fields.room_id ?? this.roomId,
      sender: fields.sender,
      type: fields.type,
      content: fields.content ?? {},
      origin_server_ts: this.#counter,
      prev_events: fields.prev_events ?? [this.#last],
      auth_events: [],
    };
    if (fields.state_key !== undefined) event.state_key = fields.state_key;
    if (fields.redacts !== undefined) event.redacts = fields.redacts;
    return event;
  }

  /** A membership event for `target` sent by `sender`. */
  member(sender: string, target: string, membership: string, extra: JsonObject = {}): RoomEvent {
    return this.event({
      type: "m.room.member",
      sender,
      state_key: target,
      content: { membership, ...extra },
    });
  }

  /** The current state as the look-up the auth rules take. */
  readonly lookup = (key: StateKey): RoomEvent | undefined => this.state.get(key);

  /** Check an event against the current state. */
  check(event: RoomEvent, options?: AuthOptions): AuthDecision {
    return checkEventAuth(event, this.lookup, this.version, options);
  }

  /** Check and apply an event; fails the test if it is rejected. */
  send(event: RoomEvent, options?: AuthOptions): RoomEvent {
    const decision = this.check(event, options);
    assert.deepEqual(decision, { allowed: true }, `${event.type} from ${event.sender}`);
    return this.force(event);
  }

  /** Apply an event without checking it, to set up a state directly. */
  force(event: RoomEvent): RoomEvent {
    if (event.state_key !== undefined) {
      this.state.set(stateKey(event.type, event.state_key), event);
    }
    this.#last = event.event_id;
    return event;
  }

  /** Send a state event through the auth rules. */
  sendState(sender: string, type: string, content: JsonObject, key = ""): RoomEvent {
    return this.send(this.event({ type, sender, state_key: key, content }));
  }
}

/** The server part of a user ID. */
export function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}

/** Options for `standardRoom`. */
export interface StandardRoomOptions extends TestRoomOptions {
  joinRule?: string;
  /** Power levels content; `users` gets the creator at 100 before v12 unless given. */
  powerLevels?: JsonObject;
  /** Users joined after the creator (the join rule must let them in, or they are forced). */
  members?: string[];
}

/**
 * A room as clients create it: create, the creator's join, power levels, join rules, then the
 * members (forced in, so the join rule does not matter for setup).
 */
export function standardRoom(versionId: string, options: StandardRoomOptions = {}): TestRoom {
  const room = new TestRoom(versionId, options);
  const creator = room.create.sender;
  room.send(room.member(creator, creator, "join"));
  const powerLevels: JsonObject = { ...options.powerLevels };
  if (powerLevels.users === undefined && !room.version.privilegedCreators) {
    powerLevels.users = { [creator]: 100 };
  }
  room.sendState(creator, "m.room.power_levels", powerLevels);
  room.sendState(creator, "m.room.join_rules", { join_rule: options.joinRule ?? "invite" });
  for (const member of options.members ?? []) room.force(room.member(member, member, "join"));
  return room;
}

/** Assert a rejection whose reason matches `reason` (a substring or a pattern). */
export function assertRejected(
  decision: AuthDecision,
  reason: string | RegExp,
  message = "expected a rejection",
): void {
  assert.equal(decision.allowed, false, message);
  if (decision.allowed) return;
  if (typeof reason === "string") assert.equal(decision.reason, reason, message);
  else assert.match(decision.reason, reason, message);
}

/** Assert an allowed decision, showing the reason when it is not. */
export function assertAllowed(decision: AuthDecision, message?: string): void {
  assert.deepEqual(decision, { allowed: true }, message);
}
