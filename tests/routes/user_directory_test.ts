/**
 * User directory scope over HTTP, as Synapse's default: users sharing a room with the searcher,
 * and members of public rooms in the room directory; the searcher finds themself only through
 * a public room (join rule public or history visibility world_readable), and the scope follows
 * changes of those two.
 */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";

Deno.test("user directory: the searcher appears only through a public room", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const found = async (searcher: typeof alice, term: string) =>
      (await server.request("POST", `${V3}/user_directory/search`, {
        token: searcher.accessToken,
        body: { search_term: term },
      })).body.results.map((r: { user_id: string }) => r.user_id);
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "private_chat", invite: [bob.userId] },
    });
    const room = encodeURIComponent(created.body.room_id);
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken, body: {} });
    const state = (type: string, content: unknown) =>
      server.request("PUT", `${V3}/rooms/${room}/state/${type}`, {
        token: alice.accessToken,
        body: content,
      });

    // A private room: each finds the other (default display names included), not themself.
    assertEquals(await found(bob, "bob"), []);
    assertEquals(await found(bob, "alice"), [alice.userId]);
    await state("m.room.join_rules", { join_rule: "public" });
    assertEquals(await found(bob, "bob"), [bob.userId]);
    await state("m.room.join_rules", { join_rule: "invite" });
    assertEquals(await found(bob, "bob"), []);
    await state("m.room.history_visibility", { history_visibility: "world_readable" });
    assertEquals(await found(bob, "bob"), [bob.userId]);
    await state("m.room.history_visibility", { history_visibility: "shared" });
    assertEquals(await found(bob, "bob"), []);
  } finally {
    server.close();
  }
});

Deno.test("user directory: members of listed public rooms are found by anyone", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const carol = await registerUser(server, "carol");
    const search = async (term: string) =>
      (await server.request("POST", `${V3}/user_directory/search`, {
        token: carol.accessToken,
        body: { search_term: term },
      })).body.results.map((r: { user_id: string }) => r.user_id);
    const listed = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat", visibility: "public" },
    });
    assertEquals(await search("alice"), [alice.userId]);
    // Listed but no longer public: its members are not found by outsiders.
    await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(listed.body.room_id)}/state/m.room.join_rules`,
      { token: alice.accessToken, body: { join_rule: "invite" } },
    );
    assertEquals(await search("alice"), []);
  } finally {
    server.close();
  }
});
