/**
 * The caps the README states for what other servers may ask of us at once: `/backfill` answers
 * at most 100 events and `get_missing_events` at most 20, whatever `limit` they ask for.
 */
import { assertEquals } from "../assert.ts";
import { startNetwork } from "./in_process_network.ts";
import {
  MAX_BACKFILL_LIMIT,
  MAX_MISSING_EVENTS_LIMIT,
} from "../../domain/federation/server_reads.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const V3 = "/_matrix/client/v3";
const FED = "/_matrix/federation/v1";

Deno.test("federation reads: /backfill answers at most 100 events, get_missing_events at most 20", async () => {
  const net = await startNetwork(["a.test", "b.test"], {
    env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" },
  });
  try {
    const a = net.servers["a.test"];
    const b = net.servers["b.test"];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId: string = created.body.room_id;
    const room = encodeURIComponent(roomId);
    const joined = await b.request("POST", `${V3}/join/${room}?server_name=a.test`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    let last = "";
    for (let i = 0; i < 120; i++) {
      const sent = await a.request("PUT", `${V3}/rooms/${room}/send/m.room.message/t${i}`, {
        token: alice.accessToken,
        body: { msgtype: "m.text", body: `m${i}` },
      });
      last = sent.body.event_id;
    }
    const ask = (method: "GET" | "POST", path: string, body?: JsonObject) =>
      net.transportFor("b.test").request({
        method,
        destination: "a.test",
        path,
        ...(body ? { body } : {}),
      });
    const backfill = await ask(
      "GET",
      `${FED}/backfill/${room}?v=${encodeURIComponent(last)}&limit=1000`,
    );
    assertEquals(backfill.status, 200);
    assertEquals(((backfill.body as JsonObject).pdus as unknown[]).length, MAX_BACKFILL_LIMIT);
    assertEquals(MAX_BACKFILL_LIMIT, 100);
    const missing = await ask("POST", `${FED}/get_missing_events/${room}`, {
      earliest_events: [],
      latest_events: [last],
      limit: 1000,
    });
    assertEquals(missing.status, 200);
    assertEquals(
      ((missing.body as JsonObject).events as unknown[]).length,
      MAX_MISSING_EVENTS_LIMIT,
    );
    assertEquals(MAX_MISSING_EVENTS_LIMIT, 20);
  } finally {
    await net.close();
  }
});
