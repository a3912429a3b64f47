/**
 * How much one pushed PDU can make us fetch through its get_missing_events walk: walked events
 * citing prev events nobody holds cost a bounded number of `/state_ids` requests.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING, registerUser } from "../routes/client_harness.ts";
import { publicRoom } from "../routes/sender_rooms.ts";
import { testServer, testVerifier } from "../domain/federation/remote_room_builder.ts";
import { RemoteView } from "./remote_view.ts";
import {
  FederationPduInput,
  MAX_GAP_STATES_PER_WALK,
} from "../../domain/federation/pdu_input/index.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { encodeBase64UrlUnpadded } from "../../domain/protocol/base64.ts";

const B = await testServer("b.test", 2);
const BOB = "@bob:b.test";

Deno.test("a get_missing_events walk whose events cite unknown prev events asks for a bounded number of states", async () => {
  const server = await startTestServer({
    TESSERA_SERVER_NAME: "a.test",
    TESSERA_REGISTRATION: "open",
    TESSERA_RATE_LIMITS: "off",
  }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const store = server.deps.eventStore;
    const roomId = await publicRoom(server, alice.userId, "10");
    const view = new RemoteView(roomId, roomVersion("10")!, B.name, B.key);
    await view.syncFrom(store);
    const input = new FederationPduInput({
      store,
      transport: view,
      verifySignatures: testVerifier([B]),
      resolver: resolveState,
    });
    const tip = (await store.roomHead(roomId))!.forwardExtremities[0];
    const join = await view.build(tip, {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join" },
    });
    assertEquals((await input.handle(B.name, roomId, join.pdu)).status, "accepted");

    // Ten walked events, each citing three prev events that exist nowhere, then the pushed one.
    const base = view.events.get(join.eventId)!;
    const walked: string[] = [];
    for (let i = 0; i < 10; i++) {
      const invented = Array.from({ length: 3 }, () => {
        const id = `$${encodeBase64UrlUnpadded(crypto.getRandomValues(new Uint8Array(32)))}`;
        view.events.set(id, { ...base, eventId: id });
        return id;
      });
      const built = await view.build(invented, {
        sender: BOB,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `walked ${i}` },
      });
      walked.push(built.eventId);
    }
    const pushed = await view.build(walked.at(-1)!, {
      sender: BOB,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "pushed" },
    });
    view.missingEventsAnswer = walked;
    const from = view.requests.length;
    const outcome = await input.handle(B.name, roomId, pushed.pdu);
    assert(outcome.status === undefined, JSON.stringify(outcome));
    const stateIds = view.requests.slice(from).filter((r) => r.includes("/state_ids/")).length;
    assert(stateIds <= MAX_GAP_STATES_PER_WALK, `${stateIds} /state_ids requests`);
  } finally {
    server.close();
  }
});
