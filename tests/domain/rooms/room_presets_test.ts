/** Room creation presets and default power levels per room version. */
import { assertEquals } from "../../assert.ts";
import { defaultPowerLevels, presetState } from "../../../domain/rooms/room_presets.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";

Deno.test("presets set join rules, history visibility and guest access as the spec's table", () => {
  const summary = (preset: Parameters<typeof presetState>[0]) =>
    presetState(preset).map((e) => Object.values(e.content)[0]);
  assertEquals(summary("private_chat"), ["invite", "shared", "can_join"]);
  assertEquals(summary("trusted_private_chat"), ["invite", "shared", "can_join"]);
  assertEquals(summary("public_chat"), ["public", "shared", "forbidden"]);
});

Deno.test("default power levels: v11 lists the creator (and trusted invitees), v12 lists nobody", () => {
  const v11 = roomVersion("11")!;
  const v12 = roomVersion("12")!;
  assertEquals(defaultPowerLevels(v11, "@a:x", "private_chat", ["@b:x"]).users, { "@a:x": 100 });
  assertEquals(
    defaultPowerLevels(v11, "@a:x", "trusted_private_chat", ["@b:x"]).users,
    { "@a:x": 100, "@b:x": 100 },
  );
  const pl12 = defaultPowerLevels(v12, "@a:x", "trusted_private_chat", ["@b:x"]);
  assertEquals(pl12.users, {});
  // v12 tombstones need more than state_default.
  assertEquals((pl12.events as Record<string, number>)["m.room.tombstone"], 150);
  assertEquals(pl12.state_default, 50);
});
