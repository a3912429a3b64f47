import { assert, assertEquals } from "../../assert.ts";
import {
  filterSchema,
  globMatches,
  matchesRoomEventFilter,
  parseRoomEventFilterParam,
  roomAllowed,
} from "../../../domain/protocol/event_filter.ts";
import { MatrixError } from "../../../domain/errors.ts";

const message = {
  type: "m.room.message",
  sender: "@alice:example.org",
  room_id: "!r:example.org",
  content: { body: "hi" },
};
const image = { ...message, content: { body: "x", url: "mxc://example.org/abc" } };

Deno.test("glob patterns: * matches any run, other characters are literal", () => {
  assert(globMatches("m.*", "m.room.message"));
  assert(globMatches("*", "anything"));
  assert(globMatches("m.room.*.x", "m.room.a.b.x"));
  assert(!globMatches("m.room.message", "m.room.messages"));
  assert(!globMatches("m.r.om", "m.room"));
  assert(!globMatches("m.(room)", "m.room"));
});

Deno.test("types and not_types with wildcards; exclusions win", () => {
  assert(matchesRoomEventFilter({ types: ["m.room.*"] }, message));
  assert(!matchesRoomEventFilter({ types: ["m.call.*"] }, message));
  assert(!matchesRoomEventFilter({ types: ["m.room.*"], not_types: ["*.message"] }, message));
  assert(!matchesRoomEventFilter({ types: [] }, message));
  assert(matchesRoomEventFilter({}, message));
});

Deno.test("senders, not_senders, rooms, not_rooms", () => {
  assert(matchesRoomEventFilter({ senders: ["@alice:example.org"] }, message));
  assert(!matchesRoomEventFilter({ senders: ["@bob:example.org"] }, message));
  assert(!matchesRoomEventFilter({ not_senders: ["@alice:example.org"] }, message));
  assert(!matchesRoomEventFilter({ rooms: ["!other:example.org"] }, message));
  assert(!matchesRoomEventFilter({ not_rooms: ["!r:example.org"] }, message));
  assert(roomAllowed({ rooms: ["!r:example.org"] }, "!r:example.org"));
  assert(
    !roomAllowed({ rooms: ["!r:example.org"], not_rooms: ["!r:example.org"] }, "!r:example.org"),
  );
});

Deno.test("contains_url selects events with or without a string url", () => {
  assert(matchesRoomEventFilter({ contains_url: true }, image));
  assert(!matchesRoomEventFilter({ contains_url: true }, message));
  assert(matchesRoomEventFilter({ contains_url: false }, message));
  assert(!matchesRoomEventFilter({ contains_url: false }, image));
});

Deno.test("parsing a query filter: unknown fields dropped, bad input is M_INVALID_PARAM", () => {
  assertEquals(parseRoomEventFilterParam(undefined), {});
  assertEquals(
    parseRoomEventFilterParam('{"types":["m.room.message"],"lazy_load_members":true,"x":1}'),
    { types: ["m.room.message"], lazy_load_members: true },
  );
  for (const bad of ["{", '{"types":"m.room.message"}', '{"limit":-1}', '{"contains_url":1}']) {
    try {
      parseRoomEventFilterParam(bad);
      assert(false, `accepted ${bad}`);
    } catch (error) {
      assert(error instanceof MatrixError);
      assertEquals(error.errcode, "M_INVALID_PARAM");
      assertEquals(error.status, 400);
    }
  }
});

Deno.test("a whole Filter parses with nested room filters", () => {
  const parsed = filterSchema.parse({
    event_format: "client",
    room: { timeline: { limit: 10, not_types: ["m.*"] }, state: { lazy_load_members: true } },
  });
  assertEquals(parsed.room?.timeline?.limit, 10);
  assertEquals(parsed.room?.state?.lazy_load_members, true);
  assert(!filterSchema.safeParse({ event_format: "xml" }).success);
});
