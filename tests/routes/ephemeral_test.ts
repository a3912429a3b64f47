/** Typing, receipts, read markers and presence over HTTP, and their sync streams. */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { emptySyncResponse, type SyncResponse } from "../../domain/sync/sync_response.ts";
import { publicRoomWith } from "./user_data_fixture.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

async function fillStream(
  server: Server,
  name: string,
  userId: string,
  joinedRoomIds: string[],
  since?: string,
): Promise<SyncResponse> {
  const upTo = await server.deps.eventStore.syncBarrier(userId);
  const response = emptySyncResponse(upTo);
  const stream = server.deps.syncStreams.find((s) => s.name === name)!;
  await stream.fill(
    {
      userId,
      deviceId: "D",
      since,
      upTo,
      fullState: false,
      filter: {},
      joinedRoomIds,
      now: Date.now(),
    },
    response,
  );
  return response;
}

Deno.test("typing: members type and stop; sync shows it; non-members and others are refused", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoomWith(server.deps.sender, alice.userId);
    const path = `${V3}/rooms/${encodeURIComponent(roomId)}/typing/${alice.userId}`;
    let res = await server.request("PUT", path, {
      token: alice.accessToken,
      body: { typing: true, timeout: 20000 },
    });
    assertEquals(res.status, 200);
    let sync = await fillStream(server, "typing", bob.userId, [roomId]);
    assertEquals(sync.rooms.join[roomId].ephemeral.events, [
      { type: "m.typing", content: { user_ids: [alice.userId] } },
    ]);
    const since = sync.next_batch;
    res = await server.request("PUT", path, { token: alice.accessToken, body: { typing: false } });
    assertEquals(res.status, 200);
    sync = await fillStream(server, "typing", bob.userId, [roomId], since);
    assertEquals(sync.rooms.join[roomId].ephemeral.events, [
      { type: "m.typing", content: { user_ids: [] } },
    ]);

    const bobPath = `${V3}/rooms/${roomId}/typing/${bob.userId}`;
    res = await server.request("PUT", bobPath, { token: bob.accessToken, body: { typing: true } });
    assertEquals(res.status, 403);
    res = await server.request("PUT", path, { token: bob.accessToken, body: { typing: true } });
    assertEquals(res.status, 403);
    res = await server.request("PUT", path, { token: alice.accessToken, body: { timeout: 5 } });
    assertEquals(res.body.errcode, "M_MISSING_PARAM");
    res = await server.request("PUT", `${V3}/rooms/nope/typing/${alice.userId}`, {
      token: alice.accessToken,
      body: { typing: true },
    });
    assertEquals(res.body.errcode, "M_INVALID_PARAM");
  } finally {
    server.deps.typing.stop();
    server.close();
  }
});

Deno.test("receipts: public and private, threaded, read markers; only moving forward", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoomWith(server.deps.sender, alice.userId, [bob.userId]);
    const first = await server.deps.sender.send({
      roomId,
      sender: alice.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "one" },
    });
    const second = await server.deps.sender.send({
      roomId,
      sender: alice.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "two" },
    });
    const receipt = (type: string, eventId: string, body: unknown = {}, token = bob.accessToken) =>
      server.request(
        "POST",
        `${V3}/rooms/${encodeURIComponent(roomId)}/receipt/${type}/${encodeURIComponent(eventId)}`,
        { token, body },
      );

    assertEquals((await receipt("m.read", second.eventId)).status, 200);
    // An older receipt does not move the public one back.
    assertEquals((await receipt("m.read", first.eventId)).status, 200);
    assertEquals(
      (await receipt("m.read.private", first.eventId, { thread_id: "main" })).status,
      200,
    );
    const latest = await server.deps.receipts.latestReceipt(bob.userId, roomId);
    assertEquals(latest?.eventId, second.eventId);
    assertEquals(latest?.receiptType, "m.read");

    const aliceView = await fillStream(server, "receipts", alice.userId, [roomId]);
    const [aliceEvent] = aliceView.rooms.join[roomId].ephemeral.events;
    assertEquals(aliceEvent.type, "m.receipt");
    assertEquals(Object.keys(aliceEvent.content as object), [second.eventId]);
    const bobView = await fillStream(server, "receipts", bob.userId, [roomId]);
    const content = bobView.rooms.join[roomId].ephemeral.events[0].content as Record<
      string,
      Record<string, Record<string, { thread_id?: string }>>
    >;
    assertEquals(content[first.eventId]["m.read.private"][bob.userId].thread_id, "main");

    const markers = await server.request("POST", `${V3}/rooms/${roomId}/read_markers`, {
      token: bob.accessToken,
      body: { "m.fully_read": second.eventId, "m.read": second.eventId },
    });
    assertEquals(markers.status, 200);
    const marker = await server.request(
      "GET",
      `${V3}/user/${bob.userId}/rooms/${roomId}/account_data/m.fully_read`,
      { token: bob.accessToken },
    );
    assertEquals(marker.body, { event_id: second.eventId });

    assertEquals((await receipt("m.bogus", second.eventId)).body.errcode, "M_INVALID_PARAM");
    assertEquals((await receipt("m.read", "$unknown:example.org")).status, 404);
    assertEquals((await receipt("m.read", second.eventId, { thread_id: "" })).status, 400);
    assertEquals(
      (await receipt("m.fully_read", second.eventId, { thread_id: "main" })).status,
      400,
    );
    assertEquals((await receipt("m.read", second.eventId, "{")).body.errcode, "M_NOT_JSON");
    const carol = await registerUser(server, "carol");
    assertEquals((await receipt("m.read", second.eventId, {}, carol.accessToken)).status, 403);
    const badMarkers = await server.request("POST", `${V3}/rooms/${roomId}/read_markers`, {
      token: bob.accessToken,
      body: { "m.read": 5 },
    });
    assertEquals(badMarkers.body.errcode, "M_BAD_JSON");
  } finally {
    server.close();
  }
});

Deno.test("presence: set and read status; sync marks users online; shared-room users see it", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await publicRoomWith(server.deps.sender, alice.userId, [bob.userId]);
    const path = `${V3}/presence/${alice.userId}/status`;
    let res = await server.request("GET", path, { token: bob.accessToken });
    assertEquals(res.body.presence, "offline");
    res = await server.request("PUT", path, {
      token: alice.accessToken,
      body: { presence: "unavailable", status_msg: "lunch" },
    });
    assertEquals(res.status, 200);
    res = await server.request("GET", path, { token: bob.accessToken });
    assertEquals(res.body.presence, "unavailable");
    assertEquals(res.body.status_msg, "lunch");

    await server.deps.presence.markFromSync(bob.userId);
    res = await server.request("GET", `${V3}/presence/${bob.userId}/status`, {
      token: alice.accessToken,
    });
    assertEquals(res.body.presence, "online");
    assertEquals(res.body.currently_active, true);

    const seen = await fillStream(server, "presence", alice.userId, [roomId]);
    const senders = seen.presence.events.map((e) => e.sender).sort();
    assertEquals(senders, [alice.userId, bob.userId].sort());
    const outsider = await fillStream(server, "presence", carol.userId, []);
    assertEquals(outsider.presence.events, []);

    res = await server.request("PUT", path, {
      token: bob.accessToken,
      body: { presence: "online" },
    });
    assertEquals(res.status, 403);
    res = await server.request("PUT", path, {
      token: alice.accessToken,
      body: { presence: "away" },
    });
    assertEquals(res.body.errcode, "M_BAD_JSON");
    res = await server.request("GET", `${V3}/presence/bad/status`, { token: alice.accessToken });
    assertEquals(res.body.errcode, "M_INVALID_PARAM");
    assert((await server.request("GET", path)).status === 401);
  } finally {
    server.close();
  }
});
