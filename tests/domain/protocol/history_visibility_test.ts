import { assert, assertEquals } from "../../assert.ts";
import {
  governingVisibility,
  historyVisibilityOf,
  mayViewEvent,
} from "../../../domain/protocol/history_visibility.ts";

Deno.test("history visibility: the spec's rules for each setting", () => {
  const see = (
    visibility: Parameters<typeof mayViewEvent>[0]["visibility"],
    m?: string,
    later = false,
  ) => mayViewEvent({ visibility, membershipAtEvent: m, joinedLater: later });
  assert(see("world_readable"));
  assert(see("joined", "join"));
  assert(!see("joined", "invite", true));
  assert(see("invited", "invite"));
  assert(!see("invited", undefined, false));
  assert(see("shared", undefined, true));
  assert(!see("shared", "leave", false));
});

Deno.test("history visibility: parsing defaults to shared; a change shows under the wider side", () => {
  assertEquals(historyVisibilityOf({ history_visibility: "joined" }), "joined");
  assertEquals(historyVisibilityOf({ history_visibility: "bogus" }), "shared");
  assertEquals(historyVisibilityOf(undefined), "shared");
  assertEquals(governingVisibility("joined", "world_readable"), "world_readable");
  assertEquals(governingVisibility("shared", "joined"), "shared");
  assertEquals(governingVisibility("invited", undefined), "invited");
});
