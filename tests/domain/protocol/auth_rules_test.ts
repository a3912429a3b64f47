import assert from "node:assert/strict";
import {
  authStateFromEvents,
  checkAuthEventsList,
  checkEventAuth,
} from "../../../domain/protocol/auth_rules.ts";
import { checkRedactionApplies } from "../../../domain/protocol/redaction_auth_rules.ts";
import type { RoomEvent } from "../../../domain/protocol/events.ts";
import {
  ALICE,
  assertAllowed,
  assertRejected,
  BOB,
  CAROL,
  DAVE,
  standardRoom,
  TestRoom,
  version,
} from "../auth_room_fixture.ts";

/** The spec's redaction rules alone, judged by no server in particular (no sender is local). */
const SPEC_ONLY = { localServer: null };
const ALL_VERSIONS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

// --- m.room.create ------------------------------------------------------------------------

Deno.test("create: a well-formed create event is allowed in every version", () => {
  for (const v of ALL_VERSIONS) {
    const room = new TestRoom(v);
    assertAllowed(checkEventAuth(room.create, room.lookup, room.version));
  }
});

Deno.test("create: rejections per version", () => {
  const cases: [string, (e: RoomEvent) => void, string | RegExp][] = [
    ["1", (e) => (e.prev_events = ["$x:a.test"]), "m.room.create event has prev_events"],
    ["12", (e) => (e.prev_events = ["$x"]), "m.room.create event has prev_events"],
    [
      "5",
      (e) => (e.room_id = "!room:b.test"),
      "room ID's domain does not match the sender's domain",
    ],
    ["11", (e) => (e.content.room_version = "99"), 'unrecognised room version "99"'],
    ["3", (e) => (e.content.room_version = 3), 'unrecognised room version "3"'],
    ["10", (e) => delete e.content.creator, "m.room.create content has no creator"],
    ["12", (e) => (e.room_id = "!room:a.test"), "m.room.create event must not have a room_id"],
    [
      "12",
      (e) => (e.content.additional_creators = ["@ok:b.test", "not-a-user"]),
      'additional_creators entry "not-a-user" is not a valid user ID',
    ],
    [
      "12",
      (e) => (e.content.additional_creators = "@x:b.test"),
      "additional_creators is not an array",
    ],
  ];
  for (const [v, mutate, reason] of cases) {
    const room = new TestRoom(v);
    const create = structuredClone(room.create);
    mutate(create);
    assertRejected(checkEventAuth(create, room.lookup, room.version), reason);
  }
});

Deno.test("create: v11+ need no creator field; v12 accepts a derived room ID or none", () => {
  const v11 = new TestRoom("11");
  assert.equal(v11.create.content.creator, undefined);
  assertAllowed(checkEventAuth(v11.create, v11.lookup, v11.version));
  const v12 = new TestRoom("12", { createContent: { additional_creators: [BOB] } });
  assertAllowed(checkEventAuth(v12.create, v12.lookup, v12.version));
  assertAllowed(checkEventAuth({ ...v12.create, room_id: "" }, v12.lookup, v12.version));
});

// --- tying events to the room's create event ----------------------------------------------

Deno.test("an event with no create event in its auth state is rejected", () => {
  const room = standardRoom("9");
  const message = room.event({ type: "m.room.message", sender: ALICE });
  const noCreate = (key: `${string}\u0000${string}`) =>
    key.startsWith("m.room.create") ? undefined : room.lookup(key);
  assertRejected(
    checkEventAuth(message, noCreate, room.version),
    "no m.room.create event in the auth state",
  );
});

Deno.test("v1-11: a create event of another room is rejected", () => {
  const room = standardRoom("6");
  const message = room.event({ type: "m.room.message", sender: ALICE, room_id: "!other:a.test" });
  assertRejected(room.check(message), "m.room.create event belongs to another room");
});

Deno.test("v12: the create event comes from options and must match the room ID", () => {
  const room = standardRoom("12");
  const message = room.event({ type: "m.room.message", sender: ALICE });
  const noCreate = (key: `${string}\u0000${string}`) =>
    key.startsWith("m.room.create") ? undefined : room.lookup(key);
  assertAllowed(checkEventAuth(message, noCreate, room.version, { createEvent: room.create }));
  const stranger = { ...room.create, event_id: `$${"z".repeat(43)}` };
  assertRejected(
    checkEventAuth(message, noCreate, room.version, { createEvent: stranger }),
    "room ID is not derived from the m.room.create event",
  );
});

// --- m.federate ----------------------------------------------------------------------------

Deno.test("m.federate false keeps other servers' users out", () => {
  for (const v of ["1", "11", "12"]) {
    const room = standardRoom(v, {
      createContent: { "m.federate": false },
      joinRule: "public",
    });
    assertRejected(
      room.check(room.member(BOB, BOB, "join")),
      "room is not federated and the sender is from another server",
    );
    assertAllowed(room.check(room.member(DAVE, DAVE, "join")));
  }
});

// --- generic rules -------------------------------------------------------------------------

Deno.test("a sender who is not joined cannot send", () => {
  const room = standardRoom("10");
  assertRejected(
    room.check(room.event({ type: "m.room.message", sender: BOB, content: { body: "hi" } })),
    "sender is not joined to the room",
  );
  room.force(room.member(BOB, BOB, "leave"));
  assertRejected(
    room.check(room.event({ type: "m.room.message", sender: BOB })),
    "sender is not joined to the room",
  );
});

Deno.test("state_default 50 keeps a PL 0 member from setting the topic", () => {
  for (const v of ALL_VERSIONS) {
    const room = standardRoom(v, { members: [BOB, CAROL] });
    if (!room.version.privilegedCreators) {
      room.sendState(ALICE, "m.room.power_levels", {
        users: { [ALICE]: 100, [CAROL]: 50 },
        state_default: 50,
      });
    } else room.sendState(ALICE, "m.room.power_levels", { users: { [CAROL]: 50 } });
    const topic = (sender: string) =>
      room.event({ type: "m.room.topic", sender, state_key: "", content: { topic: "t" } });
    assertRejected(
      room.check(topic(BOB)),
      `sender's power level 0 is below the 50 needed to send "m.room.topic"`,
    );
    assertAllowed(room.check(topic(CAROL)));
    assertAllowed(room.check(topic(ALICE)));
    // Messages use events_default (0).
    assertAllowed(room.check(room.event({ type: "m.room.message", sender: BOB })));
  }
});

Deno.test("per-event levels override the defaults", () => {
  const room = standardRoom("11", {
    members: [BOB],
    powerLevels: { users: { [ALICE]: 100 }, events: { "m.room.topic": 0, "m.reaction": 10 } },
  });
  assertAllowed(
    room.check(room.event({ type: "m.room.topic", sender: BOB, state_key: "", content: {} })),
  );
  assertRejected(
    room.check(room.event({ type: "m.reaction", sender: BOB })),
    `sender's power level 0 is below the 10 needed to send "m.reaction"`,
  );
});

Deno.test("a state_key starting with @ must be the sender", () => {
  const room = standardRoom("11", { members: [BOB], powerLevels: { state_default: 0 } });
  const custom = (key: string) =>
    room.event({ type: "org.example.status", sender: BOB, state_key: key, content: {} });
  assertAllowed(room.check(custom(BOB)));
  assertAllowed(room.check(custom("plain")));
  assertRejected(
    room.check(custom(CAROL)),
    "state_key starting with '@' must be the sender's own user ID",
  );
});

Deno.test("m.room.third_party_invite needs the invite level", () => {
  const room = standardRoom("8", {
    members: [BOB],
    powerLevels: { users: { [ALICE]: 100 }, invite: 50 },
  });
  const invite = (sender: string) =>
    room.event({
      type: "m.room.third_party_invite",
      sender,
      state_key: "tok",
      content: { public_key: "abc", display_name: "x" },
    });
  assertRejected(room.check(invite(BOB)), "sender's power level 0 is below the invite level 50");
  assertAllowed(room.check(invite(ALICE)));
});

// --- m.room.aliases (v1-5) -------------------------------------------------------------------

Deno.test("m.room.aliases: v5 checks the domain only, v6 uses the state rules", () => {
  for (const v of ["1", "5"]) {
    const room = standardRoom(v);
    // Allowed even from a non-member, as long as the state_key is the sender's domain.
    assertAllowed(
      room.check(
        room.event({ type: "m.room.aliases", sender: BOB, state_key: "b.test", content: {} }),
      ),
    );
    assertRejected(
      room.check(
        room.event({ type: "m.room.aliases", sender: BOB, state_key: "a.test", content: {} }),
      ),
      "m.room.aliases state_key does not match the sender's domain",
    );
    assertRejected(
      room.check(room.event({ type: "m.room.aliases", sender: BOB, content: {} })),
      "m.room.aliases event has no state_key",
    );
  }
  const v6 = standardRoom("6", { members: [CAROL] });
  assertRejected(
    v6.check(v6.event({ type: "m.room.aliases", sender: BOB, state_key: "b.test", content: {} })),
    "sender is not joined to the room",
  );
  assertRejected(
    v6.check(
      v6.event({ type: "m.room.aliases", sender: CAROL, state_key: "c.test", content: {} }),
    ),
    `sender's power level 0 is below the 50 needed to send "m.room.aliases"`,
  );
  // The domain no longer matters: the creator may set another server's aliases.
  assertAllowed(
    v6.check(v6.event({ type: "m.room.aliases", sender: ALICE, state_key: "b.test", content: {} })),
  );
});

// --- m.room.redaction ----------------------------------------------------------------------

Deno.test("redaction: v1 authorises by redact level or event ID domain, v3 does not", () => {
  for (const v of ["1", "2"]) {
    const room = standardRoom(v, { members: [BOB, DAVE] });
    const aliceMessage = room.send(room.event({ type: "m.room.message", sender: ALICE }));
    const redaction = (sender: string) =>
      room.event({ type: "m.room.redaction", sender, redacts: aliceMessage.event_id });
    // DAVE shares a.test with the redacted event's ID.
    assertAllowed(room.check(redaction(DAVE)));
    assertRejected(
      room.check(redaction(BOB)),
      "sender's power level 0 is below the redact level 50 and the redacted event is from another server",
    );
    assertAllowed(room.check(redaction(ALICE)));
  }
  for (const v of ["3", "11"]) {
    const room = standardRoom(v, { members: [BOB] });
    const aliceMessage = room.send(room.event({ type: "m.room.message", sender: ALICE }));
    // The auth rules let BOB send it; applying it is decided later.
    const redaction = room.event({
      type: "m.room.redaction",
      sender: BOB,
      redacts: aliceMessage.event_id,
    });
    assertAllowed(room.check(redaction));
    assertRejected(
      checkRedactionApplies(redaction, aliceMessage, room.lookup, room.version, SPEC_ONLY),
      "sender's power level 0 is below the redact level 50 and the redacted event is from another server",
    );
  }
});

Deno.test("redaction: v3+ applies for the redact level or the same server", () => {
  const room = standardRoom("10", { members: [BOB, DAVE] });
  const bobMessage = room.send(room.event({ type: "m.room.message", sender: BOB }));
  const aliceMessage = room.send(room.event({ type: "m.room.message", sender: ALICE }));
  const by = (sender: string, target: RoomEvent) =>
    room.event({ type: "m.room.redaction", sender, redacts: target.event_id });
  assertAllowed(
    checkRedactionApplies(by(BOB, bobMessage), bobMessage, room.lookup, room.version, SPEC_ONLY),
  );
  assertAllowed(
    checkRedactionApplies(
      by(DAVE, aliceMessage),
      aliceMessage,
      room.lookup,
      room.version,
      SPEC_ONLY,
    ),
  );
  assertAllowed(
    checkRedactionApplies(by(ALICE, bobMessage), bobMessage, room.lookup, room.version, SPEC_ONLY),
  );
  const elsewhere = { ...bobMessage, room_id: "!other:b.test" };
  assertRejected(
    checkRedactionApplies(by(ALICE, elsewhere), elsewhere, room.lookup, room.version, SPEC_ONLY),
    "redacted event is in another room",
  );
});

Deno.test("redaction: events_default still governs sending m.room.redaction", () => {
  const room = standardRoom("11", {
    members: [BOB],
    powerLevels: { users: { [ALICE]: 100 }, events: { "m.room.redaction": 20 } },
  });
  assertRejected(
    room.check(room.event({ type: "m.room.redaction", sender: BOB, content: { redacts: "$x" } })),
    `sender's power level 0 is below the 20 needed to send "m.room.redaction"`,
  );
});

// --- the auth_events list ------------------------------------------------------------------

function authEventsFor(room: TestRoom, event: RoomEvent, keys: string[]): RoomEvent[] {
  return keys.map((key) => {
    const [type, stateKey] = key.split("|");
    const found = room.state.get(`${type}\u0000${stateKey}`);
    assert.ok(found, key);
    return found;
  }).filter((e) => e !== event);
}

Deno.test("auth_events list: the selection is accepted in v11 and v12", () => {
  const v11 = standardRoom("11", { members: [BOB] });
  const message = v11.event({ type: "m.room.message", sender: BOB });
  const authEvents = authEventsFor(v11, message, [
    "m.room.create|",
    "m.room.power_levels|",
    `m.room.member|${BOB}`,
  ]);
  assertAllowed(checkAuthEventsList(message, authEvents, v11.version));
  // The same events as a look-up give the same decision as the room state.
  assertAllowed(checkEventAuth(message, authStateFromEvents(authEvents), v11.version));

  const v12 = standardRoom("12", { members: [BOB] });
  const m12 = v12.event({ type: "m.room.message", sender: BOB });
  const withoutCreate = authEventsFor(v12, m12, ["m.room.power_levels|", `m.room.member|${BOB}`]);
  assertAllowed(checkAuthEventsList(m12, withoutCreate, v12.version));
  assertRejected(
    checkAuthEventsList(m12, [v12.create, ...withoutCreate], v12.version),
    "m.room.create must not be among the auth events",
  );
});

Deno.test("auth_events list: rejections", () => {
  const room = standardRoom("10", { members: [BOB] });
  const message = room.event({ type: "m.room.message", sender: BOB });
  const good = authEventsFor(room, message, [
    "m.room.create|",
    "m.room.power_levels|",
    `m.room.member|${BOB}`,
  ]);
  const joinRules = room.state.get("m.room.join_rules\u0000")!;
  const secondMember = { ...good[2], event_id: "$dup" };
  assertRejected(
    checkAuthEventsList(message, [...good, secondMember], room.version),
    `duplicate auth events for ("m.room.member", "${BOB}")`,
  );
  assertRejected(
    checkAuthEventsList(message, [...good, joinRules], room.version),
    `auth event "${joinRules.event_id}" is not one the auth events selection allows`,
  );
  assertRejected(
    checkAuthEventsList(message, good, room.version, {
      isRejected: (id) => id === good[1].event_id,
    }),
    `auth event "${good[1].event_id}" was rejected`,
  );
  const foreign = { ...good[1], room_id: "!other:a.test" };
  assertRejected(
    checkAuthEventsList(message, [good[0], foreign, good[2]], room.version),
    `auth event "${good[1].event_id}" is in another room`,
  );
  assertRejected(
    checkAuthEventsList(message, good.slice(1), room.version),
    "no m.room.create event among the auth events",
  );
  const plain = room.event({ type: "m.room.message", sender: ALICE });
  assertRejected(
    checkAuthEventsList(message, [...good, plain], room.version),
    `auth event "${plain.event_id}" is not a state event`,
  );
  // Joins may cite the join rules.
  const join = room.member(CAROL, CAROL, "join");
  assertAllowed(checkAuthEventsList(join, [good[0], good[1], joinRules], version("10")));
});
