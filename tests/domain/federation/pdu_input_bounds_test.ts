/**
 * How much one PDU can make us fetch, check and store when the server that sent it answers our
 * follow-up requests with far more than we asked for (a hostile or broken peer): the answers of
 * `/get_missing_events`, `/state_ids` + `/state` and `/event_auth` are bounded by what we asked.
 */
import { assertEquals } from "../../assert.ts";
import {
  fetchMissingEvents,
  MISSING_EVENTS_LIMIT,
} from "../../../domain/federation/pdu_input/missing_prev_events.ts";
import type { RemoteEventSource } from "../../../domain/federation/pdu_input/remote_events.ts";
import { RemoteRoom, testServer } from "./remote_room_builder.ts";

const A = await testServer("a.test", 1);
const ALICE = "@alice:a.test";

/** A source that answers nothing unless a test overrides a request. */
function source(overrides: Partial<RemoteEventSource>): RemoteEventSource {
  return {
    authChain: () => Promise.resolve([]),
    event: () => Promise.resolve(undefined),
    missingEvents: () => Promise.resolve([]),
    state: () => Promise.resolve([]),
    stateIds: () => Promise.resolve(undefined),
    ...overrides,
  };
}

Deno.test("get_missing_events: an answer longer than the limit asked for is cut to it, newest kept", async () => {
  const r = await RemoteRoom.create("10", A, ALICE);
  for (let i = 0; i < 3 * MISSING_EVENTS_LIMIT; i++) {
    await r.add(ALICE, "m.room.message", { body: `m${i}`, msgtype: "m.text" });
  }
  const answer = r.events.map((e) => e.pdu).reverse();
  const got = await fetchMissingEvents(
    source({ missingEvents: () => Promise.resolve(answer) }),
    r.roomId,
    [],
    "$latest",
  );
  assertEquals(got.length, MISSING_EVENTS_LIMIT);
  // Oldest first, and the ones nearest the event we were handed (the highest depths).
  assertEquals(got, r.events.slice(-MISSING_EVENTS_LIMIT).map((e) => e.pdu));
});
