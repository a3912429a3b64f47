import assert from "node:assert/strict";
import {
  CREATOR_POWER_LEVEL,
  DEFAULT_POWER_LEVELS,
  isRoomCreator,
  notificationPowerLevel,
  parsePowerLevels,
  parsePowerLevelValue,
  requiredPowerLevelForEvent,
  roomCreators,
  senderPowerLevel,
  userPowerLevel,
} from "../../../domain/protocol/power_levels.ts";
import { ALICE, BOB, CAROL, standardRoom, TestRoom, version } from "../auth_room_fixture.ts";

Deno.test("parsePowerLevelValue follows each version's number rules", () => {
  const cases: [string, unknown, number | undefined][] = [
    ["1", 50, 50],
    ["1", "50", 50],
    ["1", " +007 ", 7],
    ["1", "-10", -10],
    ["1", "5.5", undefined],
    ["1", "abc", undefined],
    ["1", 50.7, 50], // v1-5 floats truncate
    ["5", -3.9, -3],
    ["6", 50.7, undefined], // strict canonical JSON: no floats
    ["9", "100", 100],
    ["10", "100", undefined], // integers only
    ["10", 100, 100],
    ["12", true, undefined],
    ["12", null, undefined],
  ];
  for (const [v, input, expected] of cases) {
    assert.equal(parsePowerLevelValue(input, version(v)), expected, `v${v} ${String(input)}`);
  }
});

Deno.test("parsePowerLevels applies the spec defaults", () => {
  const levels = parsePowerLevels({}, version("10"));
  assert.equal(levels.usersDefault, 0);
  assert.equal(levels.eventsDefault, 0);
  assert.equal(levels.stateDefault, 50);
  assert.equal(levels.ban, 50);
  assert.equal(levels.kick, 50);
  assert.equal(levels.redact, 50);
  assert.equal(levels.invite, 0);
  assert.equal(notificationPowerLevel("room", levels), 50);
  assert.equal(parsePowerLevels(undefined, version("10")), DEFAULT_POWER_LEVELS);
});

Deno.test("parsePowerLevels reads stringy values in v9 and ignores them in v10", () => {
  const content = { ban: "75", users: { [BOB]: "60" }, notifications: { room: "20" } };
  const v9 = parsePowerLevels(content, version("9"));
  assert.equal(v9.ban, 75);
  assert.equal(v9.users.get(BOB), 60);
  assert.equal(notificationPowerLevel("room", v9), 20);
  const v10 = parsePowerLevels(content, version("10"));
  assert.equal(v10.ban, 50);
  assert.equal(v10.users.get(BOB), undefined);
});

Deno.test("parsePowerLevels caches per content object and parse mode", () => {
  const content = { users: { [BOB]: 10 } };
  assert.equal(parsePowerLevels(content, version("3")), parsePowerLevels(content, version("4")));
  assert.notEqual(parsePowerLevels(content, version("5")), parsePowerLevels(content, version("6")));
});

Deno.test("requiredPowerLevelForEvent prefers events, then state/events defaults", () => {
  const levels = parsePowerLevels(
    { events: { "m.room.name": 10 }, state_default: 40, events_default: 5 },
    version("11"),
  );
  assert.equal(requiredPowerLevelForEvent("m.room.name", true, levels), 10);
  assert.equal(requiredPowerLevelForEvent("m.room.topic", true, levels), 40);
  assert.equal(requiredPowerLevelForEvent("m.room.message", false, levels), 5);
});

Deno.test("without power levels, the v1-11 creator has 100 and others 0", () => {
  for (const v of ["1", "10", "11"]) {
    const room = new TestRoom(v);
    assert.equal(userPowerLevel(ALICE, undefined, room.create, room.version), 100, `v${v}`);
    assert.equal(userPowerLevel(BOB, undefined, room.create, room.version), 0, `v${v}`);
  }
});

Deno.test("v1-10 read the creator from content.creator, v11 from the sender", () => {
  const v10 = new TestRoom("10");
  v10.create.content.creator = BOB; // a create whose creator differs from its sender
  assert.equal(isRoomCreator(BOB, v10.create, v10.version), true);
  assert.equal(isRoomCreator(ALICE, v10.create, v10.version), false);
  const v11 = new TestRoom("11", { createContent: { creator: BOB } });
  assert.equal(isRoomCreator(ALICE, v11.create, v11.version), true);
  assert.equal(isRoomCreator(BOB, v11.create, v11.version), false);
});

Deno.test("v12 creators (sender and additional_creators) have infinite power", () => {
  const room = standardRoom("12", {
    createContent: { additional_creators: [BOB] },
    powerLevels: { users: { [CAROL]: 100 }, users_default: 0 },
  });
  const pl = room.lookup(`m.room.power_levels\u0000`);
  assert.equal(userPowerLevel(ALICE, pl, room.create, room.version), CREATOR_POWER_LEVEL);
  assert.equal(userPowerLevel(BOB, pl, room.create, room.version), Infinity);
  assert.equal(userPowerLevel(CAROL, pl, room.create, room.version), 100);
  assert.ok(userPowerLevel(BOB, pl, room.create, room.version) > Number.MAX_SAFE_INTEGER);
  assert.deepEqual(roomCreators(room.create, room.version), [ALICE, BOB]);
  // additional_creators mean nothing before v12.
  const v11 = new TestRoom("11", { createContent: { additional_creators: [BOB] } });
  assert.equal(userPowerLevel(BOB, undefined, v11.create, v11.version), 0);
});

Deno.test("senderPowerLevel reads the power levels in the given state", () => {
  const room = standardRoom("11", { powerLevels: { users: { [ALICE]: 100, [BOB]: 42 } } });
  const message = room.event({ type: "m.room.message", sender: BOB });
  assert.equal(senderPowerLevel(message, room.lookup, room.version), 42);
  const v12 = standardRoom("12");
  const fromCreator = v12.event({ type: "m.room.message", sender: ALICE });
  // v12 auth events have no create event: the caller passes it.
  const withoutCreate = (key: `${string}\u0000${string}`) =>
    key.startsWith("m.room.create") ? undefined : v12.lookup(key);
  assert.equal(senderPowerLevel(fromCreator, withoutCreate, v12.version), 0);
  assert.equal(senderPowerLevel(fromCreator, withoutCreate, v12.version, v12.create), Infinity);
});
