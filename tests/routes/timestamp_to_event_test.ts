/**
 * GET /v1/rooms/{roomId}/timestamp_to_event: the closest event the reader may see, forwards or
 * backwards from a timestamp, over the `roomid_tsevent` projection.
 */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

Deno.test("timestamp_to_event: closest event each way, 404 past the ends, 403 outside", async () => {
  let clock = 1_000_000;
  const server = await startTestServer({}, { now: () => clock });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "private_chat" },
    });
    const roomId = created.body.room_id as string;
    const room = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
    const path = `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/timestamp_to_event`;
    const sendAt = async (ts: number, body: string) => {
      clock = ts;
      const res = await server.request("PUT", `${room}/send/m.room.message/${body}`, {
        token: alice.accessToken,
        body: { msgtype: "m.text", body },
      });
      return res.body.event_id as string;
    };
    const m1 = await sendAt(2_000_000, "m1");
    const m2 = await sendAt(3_000_000, "m2");
    const m3 = await sendAt(3_000_000, "m3");
    const find = (query: string, token = alice.accessToken) =>
      server.request("GET", `${path}?${query}`, { token });

    assertEquals((await find("ts=2500000&dir=f")).body, {
      event_id: m2,
      origin_server_ts: 3_000_000,
    });
    assertEquals((await find("ts=2500000&dir=b")).body.event_id, m1);
    assertEquals((await find("ts=2000000&dir=f")).body.event_id, m1, "an exact hit counts");
    assertEquals((await find("ts=2000000&dir=b")).body.event_id, m1);
    assertEquals((await find("ts=3000000&dir=b")).body.event_id, m3, "the latest of equal ones");
    const past = await find("ts=9000000&dir=f");
    assertEquals(past.status, 404);
    assertEquals(past.body.errcode, "M_NOT_FOUND");
    assertEquals((await find("ts=9000000&dir=b")).body.event_id, m3);
    // Before the room existed, backwards: nothing.
    assertEquals((await find("ts=1&dir=b")).status, 404);

    assertEquals((await find("ts=1&dir=x")).status, 400);
    assertEquals((await find("dir=f")).status, 400);
    assertEquals((await find("ts=abc&dir=f")).status, 400);
    assertEquals((await find("ts=1&dir=f", bob.accessToken)).status, 403);
    // The unstable path Synapse serves (MSC3030) answers the same.
    const unstable = await server.request(
      "GET",
      `/_matrix/client/unstable/org.matrix.msc3030/rooms/${
        encodeURIComponent(roomId)
      }/timestamp_to_event?ts=2500000&dir=f`,
      { token: alice.accessToken },
    );
    assertEquals(unstable.body.event_id, m2);
  } finally {
    server.close();
  }
});

Deno.test("timestamp_to_event: skips events the reader may not see", async () => {
  let clock = 1_000_000;
  const server = await startTestServer({}, { now: () => clock });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat", initial_state: [] },
    });
    const roomId = created.body.room_id as string;
    const room = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
    await server.request("PUT", `${room}/state/m.room.history_visibility/`, {
      token: alice.accessToken,
      body: { history_visibility: "joined" },
    });
    clock = 2_000_000;
    await server.request("PUT", `${room}/send/m.room.message/hidden`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "before bob" },
    });
    clock = 3_000_000;
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const path = `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/timestamp_to_event`;
    const found = await server.request("GET", `${path}?ts=1500000&dir=f`, {
      token: bob.accessToken,
    });
    assertEquals(found.status, 200);
    const event = await server.request(
      "GET",
      `${room}/event/${encodeURIComponent(found.body.event_id)}`,
      { token: bob.accessToken },
    );
    assertEquals(event.body.type, "m.room.member", "his own join, not the hidden message");
    assertEquals(event.body.state_key, bob.userId);
  } finally {
    server.close();
  }
});
