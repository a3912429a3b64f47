/** Account data and tags over HTTP, and the account data sync stream. */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { emptySyncResponse } from "../../domain/sync/sync_response.ts";
import { publicRoomWith } from "./user_data_fixture.ts";

const V3 = "/_matrix/client/v3";

Deno.test("account data: global and room entries round-trip; tags add and remove", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const user = `${V3}/user/${encodeURIComponent(alice.userId)}`;
    const roomId = await publicRoomWith(server.deps.sender, alice.userId);
    const room = `${user}/rooms/${encodeURIComponent(roomId)}`;

    assertEquals(
      (await server.request("GET", `${user}/account_data/m.direct`, { token })).status,
      404,
    );
    let res = await server.request("PUT", `${user}/account_data/m.direct`, {
      token,
      body: { "@bob:example.org": [roomId] },
    });
    assertEquals(res.status, 200);
    res = await server.request("GET", `${user}/account_data/m.direct`, { token });
    assertEquals(res.body, { "@bob:example.org": [roomId] });

    res = await server.request("PUT", `${room}/account_data/org.example.x`, {
      token,
      body: { a: 1 },
    });
    assertEquals(res.status, 200);
    res = await server.request(
      "GET",
      `/_matrix/client/r0/user/${alice.userId}/rooms/${roomId}/account_data/org.example.x`,
      { token },
    );
    assertEquals(res.body, { a: 1 });

    res = await server.request("PUT", `${room}/tags/m.favourite`, { token, body: { order: 0.5 } });
    assertEquals(res.status, 200);
    res = await server.request("PUT", `${room}/tags/u.work`, { token, body: {} });
    assertEquals(res.status, 200);
    res = await server.request("GET", `${room}/tags`, { token });
    assertEquals(res.body, { tags: { "m.favourite": { order: 0.5 }, "u.work": {} } });
    res = await server.request("DELETE", `${room}/tags/u.work`, { token });
    assertEquals(res.status, 200);
    res = await server.request("GET", `${room}/account_data/m.tag`, { token });
    assertEquals(res.body, { tags: { "m.favourite": { order: 0.5 } } });

    // The sync stream carries the latest of each entry once.
    const upTo = await server.deps.eventStore.syncBarrier(alice.userId);
    const response = emptySyncResponse(upTo);
    const stream = server.deps.syncStreams.find((s) => s.name === "account_data")!;
    await stream.fill({
      userId: alice.userId,
      deviceId: alice.deviceId,
      upTo,
      fullState: false,
      filter: {},
      joinedRoomIds: [roomId],
      now: Date.now(),
    }, response);
    assertEquals(response.account_data.events, [
      { type: "m.direct", content: { "@bob:example.org": [roomId] } },
    ]);
    const roomEvents = response.rooms.join[roomId].account_data.events;
    assertEquals(roomEvents.map((e) => e.type).sort(), ["m.tag", "org.example.x"]);

    const later = emptySyncResponse(upTo);
    await stream.fill({
      userId: alice.userId,
      deviceId: alice.deviceId,
      since: upTo,
      upTo: await server.deps.eventStore.syncBarrier(alice.userId),
      fullState: false,
      filter: {},
      joinedRoomIds: [roomId],
      now: Date.now(),
    }, later);
    assertEquals(later.account_data.events, []);
    assertEquals(later.rooms.join, {});
  } finally {
    server.close();
  }
});

Deno.test("account data: refuses other users, server-managed types and bad bodies", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const user = `${V3}/user/${alice.userId}`;
    const put = (path: string, body: unknown, token = alice.accessToken) =>
      server.request("PUT", `${user}/${path}`, { token, body });

    assertEquals((await put("account_data/x.y", {}, bob.accessToken)).status, 403);
    const get = await server.request("GET", `${user}/account_data/x.y`, { token: bob.accessToken });
    assertEquals(get.status, 403);
    const fullyRead = await put("account_data/m.fully_read", { event_id: "$x" });
    assertEquals([fullyRead.status, fullyRead.body.errcode], [405, "M_BAD_JSON"]);
    assertEquals((await put("account_data/m.push_rules", {})).status, 405);
    assertEquals((await put("account_data/x.y", [1, 2])).body.errcode, "M_BAD_JSON");
    assertEquals((await put("account_data/x.y", "{")).body.errcode, "M_NOT_JSON");
    assertEquals(
      (await put("rooms/not-a-room/account_data/x.y", {})).body.errcode,
      "M_INVALID_PARAM",
    );
    assertEquals(
      (await put("rooms/!r:example.org/tags/t", { order: "high" })).body.errcode,
      "M_BAD_JSON",
    );
    assertEquals((await put("account_data/x.y", { big: "x".repeat(70_000) })).status, 413);
    const anon = await server.request("GET", `${user}/account_data/x.y`);
    assertEquals(anon.status, 401);
  } finally {
    server.close();
  }
});
