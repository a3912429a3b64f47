/**
 * How much one PDU can make us fetch, check and store when the server that sent it answers our
 * follow-up requests with far more than we asked for (a hostile or broken peer): the answers of
 * `/get_missing_events`, `/state_ids` + `/state` and `/event_auth` are bounded by what we asked.
 */
import { assert, assertEquals } from "../../assert.ts";
import { gatherAuthEvents } from "../../../domain/federation/pdu_input/missing_auth_events.ts";
import {
  fetchMissingEvents,
  MISSING_EVENTS_LIMIT,
  STATE_REQUEST_THRESHOLD,
  stateAcrossGap,
} from "../../../domain/federation/pdu_input/missing_prev_events.ts";
import {
  admitFetchedEvents,
  type FetchedEventSinks,
  SIGNATURE_CHECK_CONCURRENCY,
} from "../../../domain/federation/pdu_input/fetched_events.ts";
import { checkSendJoinAnswer } from "../../../domain/federation/send_join_checks.ts";
import type { JsonValue } from "../../../domain/protocol/json.ts";
import type { RemoteEventSource } from "../../../domain/federation/pdu_input/remote_events.ts";
import type { HeldEvent } from "../../../domain/federation/pdu_input/types.ts";
import type { StateMap } from "../../../domain/protocol/events.ts";
import { RemoteRoom, testServer, testVerifier } from "./remote_room_builder.ts";

const A = await testServer("a.test", 1);
const B = await testServer("b.test", 2);
const ALICE = "@alice:a.test";
const BOB = "@bob:b.test";

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

function memorySinks(held: Map<string, HeldEvent>) {
  const stored: HeldEvent[] = [];
  const sinks: FetchedEventSinks = {
    held: (ids) =>
      Promise.resolve(new Map(ids.flatMap((id) => (held.has(id) ? [[id, held.get(id)!]] : [])))),
    storeOutliers: (events) => {
      for (const e of events) {
        stored.push(e);
        held.set(e.eventId, e);
      }
      return Promise.resolve();
    },
    verify: testVerifier([A, B]),
  };
  return { sinks, stored };
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

Deno.test("state_ids: IDs that neither /state nor a bounded number of /event requests supply fail the gap", async () => {
  const r = await RemoteRoom.create("10", A, ALICE);
  const prev = r.events.at(-1)!;
  const invented = Array.from({ length: 20 * STATE_REQUEST_THRESHOLD }, (_, i) => `$fake${i}`);
  let eventRequests = 0;
  const { sinks } = memorySinks(new Map());
  const result = await stateAcrossGap(r.roomId, r.version, { held: [], missing: [prev.eventId] }, {
    sinks,
    source: source({
      stateIds: () => Promise.resolve({ pduIds: invented, authChainIds: [] }),
      state: () => Promise.resolve([]),
      event: () => {
        eventRequests++;
        return Promise.resolve(undefined);
      },
    }),
    stateAfter: () => Promise.resolve(null),
    resolve: (_v, maps: StateMap[]) => Promise.resolve(maps[0]),
  });
  assert(!result.ok);
  assert(
    eventRequests <= STATE_REQUEST_THRESHOLD,
    `${eventRequests} /event requests for one gap`,
  );
});

Deno.test("event_auth: events of the answer that the event's auth events do not reach are neither checked nor stored", async () => {
  const r = await RemoteRoom.create("10", A, ALICE);
  await r.add(BOB, "m.room.member", { membership: "join" }, BOB, B);
  const message = await r.build(BOB, "m.room.message", { body: "x" }, undefined, B);
  // Unrelated events (accepted ones, here) padding the chain: only the auth chain is wanted.
  const padding = [];
  for (let i = 0; i < 20; i++) {
    padding.push(await r.add(ALICE, "m.room.topic", { topic: `t${i}` }, ""));
  }
  const { sinks, stored } = memorySinks(new Map());
  let verified = 0;
  const counting: FetchedEventSinks = {
    ...sinks,
    verify: (pdu, version) => {
      verified++;
      return sinks.verify(pdu, version);
    },
  };
  const chain = r.events.map((e) => e.pdu);
  const gathered = await gatherAuthEvents(
    message.event,
    r.version,
    counting,
    source({ authChain: () => Promise.resolve(chain) }),
  );
  for (const id of message.event.auth_events) assertEquals(gathered.get(id)?.status, "accepted");
  const paddingIds = new Set(padding.map((e) => e.eventId));
  assertEquals(stored.filter((e) => paddingIds.has(e.eventId)), []);
  assert(verified < chain.length - padding.length + 1, `${verified} signature checks`);
});

/** A verifier that counts the checks in flight at once (each yields to the event loop once). */
function concurrencyProbe(servers: Parameters<typeof testVerifier>[0]) {
  const verify = testVerifier(servers);
  const probe = { inFlight: 0, most: 0 };
  const counting: typeof verify = async (pdu, version) => {
    probe.inFlight++;
    probe.most = Math.max(probe.most, probe.inFlight);
    await new Promise((resolve) => setTimeout(resolve, 0));
    try {
      return await verify(pdu, version);
    } finally {
      probe.inFlight--;
    }
  };
  return { probe, counting };
}

Deno.test("fetched events and send_join answers: signatures are checked a bounded few at a time", async () => {
  const r = await RemoteRoom.create("10", A, ALICE);
  await r.addMembers(3 * SIGNATURE_CHECK_CONCURRENCY);
  const fetched = concurrencyProbe([A, B]);
  const { sinks } = memorySinks(new Map());
  const admitted = await admitFetchedEvents(r.roomId, r.version, r.events.map((e) => e.pdu), {
    ...sinks,
    verify: fetched.counting,
  });
  assertEquals(admitted.size, r.events.length);
  assert(fetched.probe.most <= SIGNATURE_CHECK_CONCURRENCY, `${fetched.probe.most} at once`);

  const join = await r.build(
    "@carol:b.test",
    "m.room.member",
    { membership: "join" },
    "@carol:b.test",
    B,
  );
  const answered = concurrencyProbe([A, B]);
  const checked = await checkSendJoinAnswer({
    roomId: r.roomId,
    version: r.version,
    ownJoin: join,
    serverName: B.name,
    answer: {
      origin: A.name,
      state: r.statePdus() as unknown as JsonValue[],
      auth_chain: r.authChainPdus() as unknown as JsonValue[],
    },
    verifySignatures: answered.counting,
  });
  assertEquals(checked.stateBefore, r.state);
  assert(answered.probe.most <= SIGNATURE_CHECK_CONCURRENCY, `${answered.probe.most} at once`);
});
