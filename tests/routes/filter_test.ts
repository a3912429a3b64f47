import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

Deno.test("filters: upload, read back, reuse by ID in /sync, and refuse others' filters", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const filter = { room: { timeline: { limit: 5, types: ["m.room.message"] } } };
    const path = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/filter`;
    const created = await server.request("POST", path, { body: filter, token: alice.accessToken });
    assertEquals(created.status, 200);
    const filterId = created.body.filter_id;
    assert(typeof filterId === "string" && !filterId.startsWith("{"));
    const again = await server.request("POST", path, { body: filter, token: alice.accessToken });
    assertEquals(again.body.filter_id, filterId, "the same filter gets the same ID");

    const read = await server.request("GET", `${path}/${filterId}`, { token: alice.accessToken });
    assertEquals([read.status, read.body], [200, filter]);
    const r0 = await server.request(
      "GET",
      `/_matrix/client/r0/user/${encodeURIComponent(alice.userId)}/filter/${filterId}`,
      { token: alice.accessToken },
    );
    assertEquals(r0.body, filter);

    const sync = await server.request("GET", `/_matrix/client/v3/sync?filter=${filterId}`, {
      token: alice.accessToken,
    });
    assertEquals(sync.status, 200);

    const notMine = await server.request("GET", `${path}/${filterId}`, { token: bob.accessToken });
    assertEquals([notMine.status, notMine.body.errcode], [403, "M_FORBIDDEN"]);
    const forOther = await server.request("POST", path, { body: filter, token: bob.accessToken });
    assertEquals([forOther.status, forOther.body.errcode], [403, "M_FORBIDDEN"]);
    const bobsOwn = await server.request(
      "GET",
      `/_matrix/client/v3/user/${encodeURIComponent(bob.userId)}/filter/${filterId}`,
      { token: bob.accessToken },
    );
    assertEquals([bobsOwn.status, bobsOwn.body.errcode], [404, "M_NOT_FOUND"]);
  } finally {
    server.close();
  }
});

Deno.test("filters: malformed uploads are 400s", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const path = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/filter`;
    const post = (body: unknown) =>
      server.request("POST", path, { body, token: alice.accessToken });
    assertEquals((await post("{nope")).body.errcode, "M_NOT_JSON");
    assertEquals((await post([1, 2])).body.errcode, "M_BAD_JSON");
    assertEquals((await post({ room: { timeline: { limit: -1 } } })).body.errcode, "M_BAD_JSON");
    assertEquals((await post({ event_fields: "content" })).body.errcode, "M_BAD_JSON");
    assertEquals((await post({ presence: { types: [1] } })).status, 400);
    // Room and sender lists must hold room and user IDs.
    for (
      const bad of [
        { room: { rooms: ["not_a_room_id"] } },
        { room: { timeline: { rooms: ["not_a_room_id"] } } },
        { room: { state: { not_rooms: ["#alias:example.org"] } } },
        { room: { timeline: { senders: ["not_a_sender_id"] } } },
        { presence: { not_senders: ["alice"] } },
      ]
    ) {
      const res = await post(bad);
      assertEquals([res.status, res.body.errcode], [400, "M_BAD_JSON"], JSON.stringify(bad));
    }
    const ids = await post({
      room: { rooms: ["!abc:example.org"], timeline: { senders: [alice.userId] } },
    });
    assertEquals(ids.status, 200);
    const noToken = await server.request("POST", path, { body: {} });
    assertEquals(noToken.body.errcode, "M_MISSING_TOKEN");
  } finally {
    server.close();
  }
});
