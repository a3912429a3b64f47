/** /sync shows events exactly as /messages does: transaction IDs for the sender, redactions applied. */
import { assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

Deno.test("sync gives the sending device its transaction_id and shows redacted events redacted", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId: string = created.body.room_id;
    const room = `${V3}/rooms/${encodeURIComponent(roomId)}`;
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const sent = await server.request("PUT", `${room}/send/m.room.message/txn-42`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "secret" },
    });
    await server.request("PUT", `${room}/redact/${encodeURIComponent(sent.body.event_id)}/r1`, {
      token: alice.accessToken,
      body: { reason: "oops" },
    });

    const timelineOf = async (token: string) => {
      const sync = await server.request("GET", `${V3}/sync`, { token });
      assertEquals(sync.status, 200);
      // deno-lint-ignore no-explicit-any
      const events: any[] = sync.body.rooms.join[roomId].timeline.events;
      return events.find((e) => e.event_id === sent.body.event_id);
    };
    const mine = await timelineOf(alice.accessToken);
    assertEquals(mine.unsigned.transaction_id, "txn-42");
    assertEquals(mine.content, {});
    assertEquals(mine.unsigned.redacted_because.content.reason, "oops");
    const theirs = await timelineOf(bob.accessToken);
    assertEquals(theirs.unsigned.transaction_id, undefined);
    assertEquals(theirs.content, {});
  } finally {
    server.close();
  }
});
