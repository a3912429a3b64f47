/** Presence in incremental syncs of users who newly share a room with the syncing user. */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function sync(server: Server, token: string, query = "") {
  const res = await server.request("GET", `/_matrix/client/v3/sync?${query}`, { token });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

const senders = (body: JsonObject) =>
  (body.presence as { events: JsonObject[] }).events.map((e) => e.sender).sort();

Deno.test("a room joined in the window brings its members' presence, once", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = created.body.room_id;
    // Alice goes online; Bob's syncs say offline, so Bob has no presence record at all.
    await sync(server, alice.accessToken);
    const bob1 = await sync(server, bob.accessToken, "set_presence=offline");
    const alice1 = await sync(server, alice.accessToken, "set_presence=offline");
    const joined = await server.request("POST", `/_matrix/client/v3/join/${roomId}`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);

    // Bob joined Alice's room: her presence, unchanged in his window, comes.
    const bob2 = await sync(
      server,
      bob.accessToken,
      `set_presence=offline&since=${bob1.next_batch}`,
    );
    assertEquals(senders(bob2), [alice.userId]);
    // Bob joined Alice's room: she gets his, offline since he never set any.
    const alice2 = await sync(
      server,
      alice.accessToken,
      `set_presence=offline&since=${alice1.next_batch}`,
    );
    const events = (alice2.presence as { events: JsonObject[] }).events;
    assertEquals(events.map((e) => [e.sender, (e.content as JsonObject).presence]), [
      [bob.userId, "offline"],
    ]);
    // Once: the next incremental sync has no presence.
    const bob3 = await sync(
      server,
      bob.accessToken,
      `set_presence=offline&since=${bob2.next_batch}`,
    );
    assertEquals(senders(bob3), []);
  } finally {
    await server.close();
  }
});
