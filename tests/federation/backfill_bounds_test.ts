/**
 * How much one `/backfill` answer can make us fetch: an answer whose events cite prev events
 * nobody holds costs a bounded number of `/state_ids` requests, however many it cites.
 */
import { assert, assertEquals } from "../assert.ts";
import { startNetwork } from "./in_process_network.ts";
import { RemoteView } from "./remote_view.ts";
import { createRoom, joinThrough } from "./network_helpers.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { encodeBase64UrlUnpadded } from "../../domain/protocol/base64.ts";
import { MAX_GAP_STATES_PER_BACKFILL } from "../../domain/federation/backfill.ts";

const A = "a.test";
const B = "b.test";

Deno.test("backfill: an answer citing many unknown prev events asks for a bounded number of states", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    await joinThrough(b, bob, roomId, A);

    // 30 events signed by A, each citing 3 prev events that exist nowhere.
    const view = new RemoteView(roomId, roomVersion("10")!, A, a.deps.keyring.current);
    await view.syncFrom(a.deps.eventStore);
    const tip = (await a.deps.eventStore.roomHead(roomId))!.forwardExtremities[0];
    const base = view.events.get(tip)!;
    const answer: Pdu[] = [];
    for (let i = 0; i < 30; i++) {
      const invented = Array.from({ length: 3 }, () => {
        const id = `$${encodeBase64UrlUnpadded(crypto.getRandomValues(new Uint8Array(32)))}`;
        view.events.set(id, { ...base, eventId: id });
        return id;
      });
      const built = await view.build(invented, {
        sender: alice.userId,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `invented ${i}` },
      });
      answer.push(built.pdu);
    }
    net.intercept((request) => {
      if (!request.path.startsWith(`/_matrix/federation/v1/backfill/`)) return "deliver";
      return { status: 200, body: { origin: A, origin_server_ts: 0, pdus: answer } as never };
    });
    const from = net.log.length;
    const page = await b.request(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`,
      { token: bob.accessToken },
    );
    net.intercept(undefined);
    assertEquals(page.status, 200, JSON.stringify(page.body));
    const asked = net.log.slice(from);
    assert(asked.some((r) => r.path.includes("/backfill/")));
    const stateIds = asked.filter((r) => r.path.includes("/state_ids/")).length;
    assert(stateIds <= MAX_GAP_STATES_PER_BACKFILL, `${stateIds} /state_ids requests`);
  } finally {
    await net.close();
  }
});
