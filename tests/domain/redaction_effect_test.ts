/**
 * `redactionTakesEffect` (domain/redaction_auth_rules.ts): which redactions clients see and
 * which redact their target, as reads and the search and relation projections decide it.
 */
import { assertEquals } from "../assert.ts";
import { redactionTakesEffect } from "../../domain/protocol/redaction_auth_rules.ts";
import type { RoomEvent } from "../../domain/protocol/events.ts";
import { ALICE, BOB, CAROL, DAVE, standardRoom } from "./auth_room_fixture.ts";

const SPEC_ONLY = { localServer: null };

for (const v of ["3", "10", "11", "12"]) {
  Deno.test(`redactionTakesEffect v${v}: never a create event, a rejected event or another room's`, () => {
    const room = standardRoom(v, { members: [BOB, CAROL, DAVE] });
    const bobMessage = room.send(room.event({ type: "m.room.message", sender: BOB }));
    const aliceMessage = room.send(room.event({ type: "m.room.message", sender: ALICE }));
    const by = (sender: string, target: RoomEvent) =>
      room.event({
        type: "m.room.redaction",
        sender,
        redacts: target.event_id,
        content: room.version.redactsInContent ? { redacts: target.event_id } : {},
      });
    const takes = (sender: string, target: RoomEvent, rejected = false) =>
      redactionTakesEffect(
        by(sender, target),
        target,
        rejected,
        room.lookup,
        room.version,
        SPEC_ONLY,
      );
    // Own events, the redact level (Alice is the room's admin), the target's server (Dave).
    assertEquals(takes(BOB, bobMessage), true);
    assertEquals(takes(ALICE, bobMessage), true);
    assertEquals(takes(DAVE, aliceMessage), true);
    // Another server's user without the level.
    assertEquals(takes(CAROL, aliceMessage), false);
    assertEquals(takes(BOB, aliceMessage), false);
    // Never: the create event (even by its creator), a rejected event, another room's event.
    assertEquals(takes(ALICE, room.create), false);
    assertEquals(takes(BOB, bobMessage, true), false);
    assertEquals(takes(BOB, { ...bobMessage, room_id: "!other:b.test" }), false);
  });
}
