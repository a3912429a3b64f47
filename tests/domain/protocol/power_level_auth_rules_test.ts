import assert from "node:assert/strict";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { powerLevelsContentProblem } from "../../../domain/protocol/power_level_auth_rules.ts";
import {
  ALICE,
  assertAllowed,
  assertRejected,
  BOB,
  CAROL,
  standardRoom,
  TestRoom,
  version,
} from "../auth_room_fixture.ts";

function plEvent(room: TestRoom, sender: string, content: JsonObject) {
  return room.event({ type: "m.room.power_levels", sender, state_key: "", content });
}

Deno.test("a PL 0 member raising its own level is rejected", () => {
  for (const v of ["1", "9", "10", "11", "12"]) {
    const room = standardRoom(v, {
      members: [BOB],
      powerLevels: { events: { "m.room.power_levels": 100 } },
    });
    const users: JsonObject = room.version.privilegedCreators
      ? { [BOB]: 100 }
      : { [ALICE]: 100, [BOB]: 100 };
    assertRejected(
      room.check(plEvent(room, BOB, { users })),
      "sender's power level 0 is below the 100 needed to change power levels",
      `v${v}`,
    );
  }
  // With only state_default guarding power levels, the default 50 applies.
  const room = standardRoom("11", { members: [BOB] });
  assertRejected(
    room.check(plEvent(room, BOB, { users: { [ALICE]: 100, [BOB]: 100 } })),
    "sender's power level 0 is below the 50 needed to change power levels",
  );
});

Deno.test("a member allowed to send power levels still cannot exceed its own level", () => {
  const room = standardRoom("11", {
    members: [BOB],
    powerLevels: { users: { [ALICE]: 100, [BOB]: 0 }, events: { "m.room.power_levels": 0 } },
  });
  const base = { events: { "m.room.power_levels": 0 } };
  assertRejected(
    room.check(plEvent(room, BOB, { ...base, users: { [ALICE]: 100, [BOB]: 100 } })),
    `new level 100 for "${BOB}" is above the sender's power level 0`,
  );
  assertRejected(
    room.check(plEvent(room, BOB, { ...base, users: { [ALICE]: 0, [BOB]: 0 } })),
    `sender's power level 0 is not above the current level 100 of "${ALICE}"`,
  );
  // Its own entry may go down (or be removed).
  assertAllowed(room.check(plEvent(room, BOB, { ...base, users: { [ALICE]: 100, [BOB]: -1 } })));
  assertAllowed(room.check(plEvent(room, BOB, { ...base, users: { [ALICE]: 100 } })));
});

Deno.test("a moderator's changes are bounded by its level", () => {
  const current = {
    users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50 },
    kick: 75,
    events: { "m.room.name": 50, "m.room.tombstone": 100 },
  };
  const room = standardRoom("10", { members: [BOB, CAROL], powerLevels: current });
  const change = (patch: JsonObject) => room.check(plEvent(room, BOB, { ...current, ...patch }));
  assertAllowed(change({ users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50, "@erin:e.test": 50 } }));
  assertAllowed(change({ events: { "m.room.name": 25, "m.room.tombstone": 100 } }));
  assertRejected(
    change({ users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 0 } }),
    `sender's power level 50 is not above the current level 50 of "${CAROL}"`,
  );
  assertRejected(
    change({ kick: 50 }),
    "sender's power level 50 is below the current kick level 75",
  );
  assertRejected(change({ ban: 60 }), "new ban level 60 is above the sender's power level 50");
  assertRejected(
    change({ events: { "m.room.name": 50 } }),
    `sender's power level 50 is below the current events level 100 for "m.room.tombstone"`,
  );
  assertRejected(
    change({ events: { ...current.events, "m.room.topic": 51 } }),
    `new events level 51 for "m.room.topic" is above the sender's power level 50`,
  );
});

Deno.test("string power levels are accepted in v9 and rejected in v10", () => {
  const content = { users: { [ALICE]: "100", [BOB]: " 50 " }, ban: "50" };
  const v9 = new TestRoom("9");
  v9.send(v9.member(ALICE, ALICE, "join"));
  assertAllowed(v9.check(plEvent(v9, ALICE, content)));
  v9.send(plEvent(v9, ALICE, content));
  // The stringy levels are then in force: the creator still has 100.
  assertAllowed(v9.check(plEvent(v9, ALICE, { users: { [ALICE]: 100 } })));

  const cases: [JsonObject, string][] = [
    [{ users: { [ALICE]: "100" } }, `users level for "${ALICE}" is not an integer`],
    [{ ban: "50" }, "ban is not an integer"],
    [{ users_default: 0.5 }, "users_default is not an integer"],
    [{ events: { "m.room.name": "50" } }, `events level for "m.room.name" is not an integer`],
    [{ notifications: { room: "50" } }, `notifications level for "room" is not an integer`],
    [{ events: [] }, "events is not an object"],
  ];
  for (const [bad, reason] of cases) {
    const v10 = new TestRoom("10");
    v10.send(v10.member(ALICE, ALICE, "join"));
    assertRejected(v10.check(plEvent(v10, ALICE, bad)), reason);
  }
});

Deno.test("users must map valid user IDs to integers in every version", () => {
  for (const v of ["1", "9", "12"]) {
    assert.equal(
      powerLevelsContentProblem({ users: { "not-a-user": 50 } }, version(v), undefined),
      `users key "not-a-user" is not a valid user ID`,
    );
    assert.equal(
      powerLevelsContentProblem({ users: { [BOB]: "fifty" } }, version(v), undefined),
      `users level for "${BOB}" is not an integer`,
    );
    assert.equal(
      powerLevelsContentProblem({ users: [] }, version(v), undefined),
      "users is not an object",
    );
  }
  // v1-5 accept float levels (truncated); v6 does not.
  assert.equal(
    powerLevelsContentProblem({ users: { [BOB]: 50.5 } }, version("5"), undefined),
    undefined,
  );
  assert.equal(
    powerLevelsContentProblem({ users: { [BOB]: 50.5 } }, version("6"), undefined),
    `users level for "${BOB}" is not an integer`,
  );
});

Deno.test("notifications levels are protected from v6, not in v5", () => {
  for (const [v, expect] of [["5", true], ["6", false]] as const) {
    const current = { users: { [ALICE]: 100, [BOB]: 50 }, notifications: { room: 100 } };
    const room = standardRoom(v, { members: [BOB], powerLevels: current });
    const lowered = plEvent(room, BOB, { ...current, notifications: { room: 0 } });
    const raised = plEvent(room, BOB, {
      users: { [ALICE]: 100, [BOB]: 50 },
      notifications: { room: 100, "@mentions": 99 },
    });
    if (expect) {
      assertAllowed(room.check(lowered), `v${v}`);
      assertAllowed(room.check(raised), `v${v}`);
    } else {
      assertRejected(
        room.check(lowered),
        `sender's power level 50 is below the current notifications level 100 for "room"`,
      );
      assertRejected(
        room.check(raised),
        `new notifications level 99 for "@mentions" is above the sender's power level 50`,
      );
    }
  }
});

Deno.test("v12: creators cannot appear in users, and need no entry to act", () => {
  const room = standardRoom("12", {
    createContent: { additional_creators: [BOB] },
    members: [BOB, CAROL],
  });
  assertRejected(
    room.check(plEvent(room, ALICE, { users: { [ALICE]: 100 } })),
    `room creator "${ALICE}" cannot be listed in users`,
  );
  assertRejected(
    room.check(plEvent(room, ALICE, { users: { [CAROL]: 50, [BOB]: 100 } })),
    `room creator "${BOB}" cannot be listed in users`,
  );
  // Additional creators have infinite power: they may set any level.
  assertAllowed(
    room.check(plEvent(room, BOB, { users: { [CAROL]: 9007199254740991 }, ban: 1000 })),
  );
  assertRejected(
    room.check(plEvent(room, CAROL, { users: { [CAROL]: 100 } })),
    "sender's power level 0 is below the 50 needed to change power levels",
  );
});

Deno.test("the first power levels event needs only well-formed content", () => {
  const room = new TestRoom("11");
  room.send(room.member(ALICE, ALICE, "join"));
  // No power levels yet: the creator has 100 and may hand out any level, even above its own.
  assertAllowed(room.check(plEvent(room, ALICE, { users: { [ALICE]: 100, [BOB]: 1000 } })));
  assertRejected(
    room.check(plEvent(room, BOB, { users: { [BOB]: 100 } })),
    "sender is not joined to the room",
  );
});
