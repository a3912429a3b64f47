/** Room configs of sliding sync (domain/sliding_sync/room_config.ts): limits and merging. */
import { assert, assertEquals } from "../../assert.ts";
import {
  MAX_SLIDING_TIMELINE_LIMIT,
  mergeRoomConfigs,
  roomConfig,
  sameRoomConfig,
} from "../../../domain/sliding_sync/room_config.ts";

Deno.test("a room in several lists gets the union of required_state and the largest limit", () => {
  const merged = mergeRoomConfigs([
    roomConfig([["m.room.name", ""], ["m.room.member", "$LAZY"]], 1),
    roomConfig([["m.room.member", "$LAZY"], ["m.room.topic", ""]], 10),
    roomConfig([], 0),
  ]);
  assertEquals(merged, {
    requiredState: [["m.room.member", "$LAZY"], ["m.room.name", ""], ["m.room.topic", ""]],
    timelineLimit: 10,
  });
});

Deno.test("timeline_limit is capped and never negative; equal configs compare equal", () => {
  assertEquals(roomConfig([], 100_000).timelineLimit, MAX_SLIDING_TIMELINE_LIMIT);
  assertEquals(roomConfig([], -3).timelineLimit, 0);
  assert(
    sameRoomConfig(
      roomConfig([["a", ""], ["b", ""]], 5),
      roomConfig([["b", ""], ["a", ""], ["a", ""]], 5),
    ),
  );
  assert(!sameRoomConfig(roomConfig([["a", ""]], 5), roomConfig([["a", ""]], 6)));
  assert(!sameRoomConfig(roomConfig([["a", ""]], 5), roomConfig([["a", "x"]], 5)));
});
