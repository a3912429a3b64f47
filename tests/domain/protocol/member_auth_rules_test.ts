import assert from "node:assert/strict";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import {
  ALICE,
  assertAllowed,
  assertRejected,
  BOB,
  CAROL,
  DAVE,
  standardRoom,
  TestRoom,
} from "../auth_room_fixture.ts";

// --- join ------------------------------------------------------------------------------------

Deno.test("join: the creator's first join right after the create event", () => {
  for (const v of ["1", "10", "11", "12"]) {
    const room = new TestRoom(v, { createContent: { additional_creators: [BOB] } });
    assertAllowed(room.check(room.member(ALICE, ALICE, "join")));
    // Anyone else, even a v12 additional creator, needs a join rule.
    assertRejected(room.check(room.member(BOB, BOB, "join")), `join rule "invite" needs an invite`);
  }
  // The rule is "the only previous event is the create event": later joins go through join rules.
  const room = new TestRoom("11");
  room.force(room.event({ type: "m.room.message", sender: ALICE }));
  assertRejected(
    room.check(room.member(ALICE, ALICE, "join")),
    `join rule "invite" needs an invite`,
  );
});

Deno.test("join: v1-10 take the first joiner from content.creator", () => {
  const room = new TestRoom("10");
  room.create.content.creator = BOB;
  assertAllowed(room.check(room.member(BOB, BOB, "join")));
  assertRejected(
    room.check(room.member(ALICE, ALICE, "join")),
    `join rule "invite" needs an invite`,
  );
});

Deno.test("join: table of join rules, memberships and versions", () => {
  type Case = {
    v: string;
    rule: string;
    bob?: string; // BOB's membership before the join
    via?: string; // join_authorised_via_users_server
    expect: true | string;
  };
  const cases: Case[] = [
    { v: "1", rule: "public", expect: true },
    { v: "12", rule: "public", expect: true },
    { v: "1", rule: "invite", expect: `join rule "invite" needs an invite` },
    { v: "1", rule: "invite", bob: "invite", expect: true },
    { v: "11", rule: "invite", bob: "join", expect: true },
    { v: "11", rule: "invite", bob: "leave", expect: `join rule "invite" needs an invite` },
    { v: "6", rule: "knock", bob: "invite", expect: `join rule "knock" does not allow joining` },
    { v: "7", rule: "knock", bob: "invite", expect: true },
    { v: "7", rule: "knock", bob: "knock", expect: `join rule "knock" needs an invite` },
    {
      v: "7",
      rule: "restricted",
      via: ALICE,
      expect: `join rule "restricted" does not allow joining`,
    },
    { v: "8", rule: "restricted", via: ALICE, expect: true },
    { v: "8", rule: "restricted", bob: "invite", expect: true },
    {
      v: "8",
      rule: "restricted",
      expect: "restricted join has no join_authorised_via_users_server",
    },
    {
      v: "9",
      rule: "restricted",
      via: CAROL,
      expect: "authorising user's power level 0 is below the invite level 50",
    },
    { v: "9", rule: "restricted", via: DAVE, expect: "authorising user is not joined to the room" },
    {
      v: "9",
      rule: "knock_restricted",
      via: ALICE,
      expect: `join rule "knock_restricted" does not allow joining`,
    },
    { v: "10", rule: "knock_restricted", via: ALICE, expect: true },
    { v: "10", rule: "knock_restricted", bob: "invite", expect: true },
    { v: "12", rule: "knock_restricted", via: ALICE, expect: true }, // ALICE is a creator
    {
      v: "12",
      rule: "private",
      bob: "invite",
      expect: `join rule "private" does not allow joining`,
    },
  ];
  for (const c of cases) {
    const room = standardRoom(c.v, {
      joinRule: c.rule,
      members: [CAROL],
      powerLevels: c.v === "12" ? { invite: 50 } : { users: { [ALICE]: 100 }, invite: 50 },
    });
    if (c.bob) room.force(room.member(c.bob === "invite" ? ALICE : BOB, BOB, c.bob));
    const extra: JsonObject = c.via ? { join_authorised_via_users_server: c.via } : {};
    const decision = room.check(room.member(BOB, BOB, "join", extra));
    const label = `v${c.v} ${c.rule} bob=${c.bob} via=${c.via}`;
    if (c.expect === true) assertAllowed(decision, label);
    else assertRejected(decision, c.expect, label);
  }
});

Deno.test("join: bans block joins under every join rule", () => {
  for (const [v, rule] of [["1", "public"], ["8", "restricted"], ["12", "public"]]) {
    const room = standardRoom(v, { joinRule: rule });
    room.force(room.member(ALICE, BOB, "ban"));
    assertRejected(
      room.check(room.member(BOB, BOB, "join", { join_authorised_via_users_server: ALICE })),
      "sender is banned from the room",
    );
  }
});

Deno.test("join: nobody can join on behalf of someone else", () => {
  const room = standardRoom("11", { joinRule: "public" });
  assertRejected(
    room.check(room.member(ALICE, BOB, "join")),
    "sender cannot join on behalf of another user",
  );
});

Deno.test("join_authorised_via_users_server must be signed by that user's server (v8+)", () => {
  const room = standardRoom("9", { joinRule: "restricted" });
  const join = room.member(BOB, BOB, "join", { join_authorised_via_users_server: ALICE });
  const servers: string[] = [];
  const signedBy = (signer: string) => ({
    isSignedBy: (_event: unknown, server: string) => (servers.push(server), server === signer),
  });
  assertAllowed(room.check(join, signedBy("a.test")));
  assertRejected(
    room.check(join, signedBy("b.test")),
    "event is not signed by the authorising user's server",
  );
  assertRejected(
    room.check(room.member(BOB, BOB, "join", { join_authorised_via_users_server: 5 })),
    "join_authorised_via_users_server is not a user ID",
  );
  assert.deepEqual(servers, ["a.test", "a.test"]);
  // Before v8 the key means nothing.
  const v7 = standardRoom("7", { joinRule: "public" });
  assertAllowed(
    v7.check(v7.member(BOB, BOB, "join", { join_authorised_via_users_server: 5 }), signedBy("x")),
  );
});

// --- invite ----------------------------------------------------------------------------------

Deno.test("invite: allowed for a joined member at the invite level", () => {
  const room = standardRoom("11", { members: [BOB] });
  assertAllowed(room.check(room.member(BOB, CAROL, "invite")));
});

Deno.test("invite: rejections", () => {
  const room = standardRoom("11", {
    members: [BOB, CAROL],
    powerLevels: { users: { [ALICE]: 100, [CAROL]: 10 }, invite: 10 },
  });
  room.force(room.member(ALICE, DAVE, "ban"));
  assertRejected(
    room.check(room.member(ALICE, DAVE, "invite")),
    "target user is banned from the room",
  );
  assertRejected(
    room.check(room.member(ALICE, CAROL, "invite")),
    "target user is already joined to the room",
  );
  assertRejected(
    room.check(room.member(BOB, "@erin:e.test", "invite")),
    "sender's power level 0 is below the invite level 10",
  );
  assertAllowed(room.check(room.member(CAROL, "@erin:e.test", "invite")));
  assertRejected(
    room.check(room.member("@erin:e.test", "@frank:e.test", "invite")),
    "sender is not joined to the room",
  );
});

// --- leave, kick, unban ----------------------------------------------------------------------

Deno.test("leave: a user may leave when joined or invited (and knocked from v7)", () => {
  const cases: [string, string | undefined, true | string][] = [
    ["1", "join", true],
    ["1", "invite", true],
    ["6", "knock", `sender cannot leave with membership "knock"`],
    ["7", "knock", true],
    ["11", "leave", `sender cannot leave with membership "leave"`],
    ["11", "ban", `sender cannot leave with membership "ban"`],
    ["12", undefined, `sender cannot leave with membership "none"`],
  ];
  for (const [v, membership, expect] of cases) {
    const room = standardRoom(v);
    if (membership) room.force(room.member(BOB, BOB, membership));
    const decision = room.check(room.member(BOB, BOB, "leave"));
    if (expect === true) assertAllowed(decision);
    else assertRejected(decision, expect);
  }
});

Deno.test("kick: a PL 50 moderator cannot kick the PL 100 creator", () => {
  for (const v of ["1", "6", "11"]) {
    const room = standardRoom(v, {
      members: [BOB, CAROL],
      powerLevels: { users: { [ALICE]: 100, [BOB]: 50 } },
    });
    assertRejected(
      room.check(room.member(BOB, ALICE, "leave")),
      "target user's power level 100 is not below the sender's 50",
    );
    assertAllowed(room.check(room.member(BOB, CAROL, "leave")));
    assertAllowed(room.check(room.member(ALICE, BOB, "leave")));
    assertRejected(
      room.check(room.member(CAROL, BOB, "leave")),
      "sender's power level 0 is below the kick level 50",
    );
  }
});

Deno.test("kick: equal levels cannot kick each other", () => {
  const room = standardRoom("10", {
    members: [BOB, CAROL],
    powerLevels: { users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50 } },
  });
  assertRejected(
    room.check(room.member(BOB, CAROL, "leave")),
    "target user's power level 50 is not below the sender's 50",
  );
});

Deno.test("unban needs the ban level as well as the kick level", () => {
  const room = standardRoom("11", {
    members: [BOB],
    powerLevels: { users: { [ALICE]: 100, [BOB]: 50 }, kick: 50, ban: 75 },
  });
  room.force(room.member(ALICE, CAROL, "ban"));
  assertRejected(
    room.check(room.member(BOB, CAROL, "leave")),
    "sender's power level 50 is below the ban level 75 needed to unban",
  );
  assertAllowed(room.check(room.member(ALICE, CAROL, "leave")));
  assertRejected(room.check(room.member(DAVE, CAROL, "leave")), "sender is not joined to the room");
});

// --- ban -------------------------------------------------------------------------------------

Deno.test("ban: level checks", () => {
  const room = standardRoom("9", {
    members: [BOB, CAROL],
    powerLevels: { users: { [ALICE]: 100, [BOB]: 50 } },
  });
  assertAllowed(room.check(room.member(BOB, CAROL, "ban")));
  assertAllowed(room.check(room.member(BOB, DAVE, "ban"))); // not in the room: pre-emptive ban
  assertRejected(
    room.check(room.member(BOB, ALICE, "ban")),
    "target user's power level 100 is not below the sender's 50",
  );
  assertRejected(
    room.check(room.member(CAROL, BOB, "ban")),
    "sender's power level 0 is below the ban level 50",
  );
  assertRejected(room.check(room.member(DAVE, CAROL, "ban")), "sender is not joined to the room");
});

// --- knock -----------------------------------------------------------------------------------

Deno.test("knock: allowed only from v7 under knock rules (knock_restricted from v10)", () => {
  const cases: [string, string, true | string][] = [
    ["6", "knock", `unknown membership "knock"`],
    ["7", "knock", true],
    ["7", "public", `join rule "public" does not allow knocking`],
    ["7", "invite", `join rule "invite" does not allow knocking`],
    ["9", "knock_restricted", `join rule "knock_restricted" does not allow knocking`],
    ["10", "knock_restricted", true],
    ["10", "restricted", `join rule "restricted" does not allow knocking`],
    ["12", "knock", true],
  ];
  for (const [v, rule, expect] of cases) {
    const room = standardRoom(v, { joinRule: rule });
    const decision = room.check(room.member(BOB, BOB, "knock"));
    if (expect === true) assertAllowed(decision);
    else assertRejected(decision, expect);
  }
});

Deno.test("knock: not for others, nor when banned, invited or joined", () => {
  const room = standardRoom("10", { joinRule: "knock" });
  assertRejected(
    room.check(room.member(BOB, CAROL, "knock")),
    "sender cannot knock on behalf of another user",
  );
  for (const membership of ["ban", "invite", "join"]) {
    room.force(room.member(ALICE, BOB, membership));
    assertRejected(
      room.check(room.member(BOB, BOB, "knock")),
      `sender cannot knock with membership "${membership}"`,
    );
  }
  room.force(room.member(BOB, BOB, "leave"));
  assertAllowed(room.check(room.member(BOB, BOB, "knock")));
});

// --- malformed -------------------------------------------------------------------------------

Deno.test("member events need a state_key, a membership, and a known membership", () => {
  const room = standardRoom("11", { joinRule: "public" });
  assertRejected(
    room.check(room.event({ type: "m.room.member", sender: BOB, content: { membership: "join" } })),
    "m.room.member event has no state_key",
  );
  assertRejected(
    room.check(room.event({ type: "m.room.member", sender: BOB, state_key: BOB, content: {} })),
    "m.room.member event has no membership",
  );
  assertRejected(room.check(room.member(BOB, BOB, "dance")), `unknown membership "dance"`);
  assertRejected(
    room.check(room.event({
      type: "m.room.member",
      sender: BOB,
      state_key: BOB,
      content: { membership: null },
    })),
    'unknown membership "null"',
  );
});

// --- v12 creators ----------------------------------------------------------------------------

Deno.test("v12: creators outrank everyone and cannot be kicked or banned", () => {
  const room = standardRoom("12", {
    createContent: { additional_creators: [BOB] },
    members: [BOB, CAROL],
    powerLevels: { users: { [CAROL]: 100 } },
  });
  for (const creator of [ALICE, BOB]) {
    for (const membership of ["leave", "ban"]) {
      assertRejected(
        room.check(room.member(CAROL, creator, membership)),
        "target user's power level infinite is not below the sender's 100",
      );
    }
  }
  // Creators cannot remove each other either: infinite is not below infinite.
  assertRejected(
    room.check(room.member(ALICE, BOB, "ban")),
    "target user's power level infinite is not below the sender's infinite",
  );
  assertAllowed(room.check(room.member(BOB, CAROL, "ban")));
});

Deno.test("v11: additional_creators grant nothing", () => {
  const room = standardRoom("11", {
    createContent: { additional_creators: [BOB] },
    members: [BOB, CAROL],
    powerLevels: { users: { [ALICE]: 100, [CAROL]: 100 } },
  });
  assertAllowed(room.check(room.member(CAROL, BOB, "ban")));
});
