/**
 * State sends that change nothing return the current event (as Synapse does): the same content
 * from the same sender via `PUT /state` or a second `/join`; other content, another sender, or
 * a sender who left gets a new event or the auth rules' answer. Join bodies' extra keys go into
 * the member event.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const created = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset: "public_chat", room_alias_name: "hall" },
  });
  assertEquals(created.status, 200);
  const roomId: string = created.body.room_id;
  const room = encodeURIComponent(roomId);
  const stateId = async (type: string, key: string) =>
    await server.deps.eventStore.currentStateEventId(roomId, type, key);
  const position = async () => (await server.deps.eventStore.roomHead(roomId))!.lastPosition;
  return { server, alice, bob, roomId, room, stateId, position };
}

Deno.test("PUT /state with the current content and sender returns the current event", async () => {
  const { server, alice, bob, room, stateId, position } = await setup();
  try {
    const put = (token: string, content: unknown) =>
      server.request("PUT", `${V3}/rooms/${room}/state/a.test.state/`, { token, body: content });
    const first = await put(alice.accessToken, { a_key: "a_value", n: 1 });
    assertEquals(first.status, 200);
    const before = await position();
    // Key order does not matter: the canonical JSON is the same.
    const again = await put(alice.accessToken, { n: 1, a_key: "a_value" });
    assertEquals(again.body.event_id, first.body.event_id);
    assertEquals(await position(), before, "nothing was appended");

    const changed = await put(alice.accessToken, { a_key: "another" });
    assert(changed.body.event_id !== first.body.event_id);
    assertEquals(await stateId("a.test.state", ""), changed.body.event_id);

    // Another sender with the same content makes a new event (the sender is part of state).
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken, body: {} });
    await server.request("PUT", `${V3}/rooms/${room}/state/m.room.power_levels`, {
      token: alice.accessToken,
      body: { state_default: 0 },
    });
    const bobs = await put(bob.accessToken, { a_key: "another" });
    assertEquals(bobs.status, 200);
    assert(bobs.body.event_id !== changed.body.event_id);

    // Once Bob has left, repeating his state is refused as any send from a non-member is.
    await server.request("POST", `${V3}/rooms/${room}/leave`, { token: bob.accessToken });
    const afterLeaving = await put(bob.accessToken, { a_key: "another" });
    assertEquals(afterLeaving.status, 403);
  } finally {
    server.close();
  }
});

Deno.test("joining twice returns the current member event; a changed join body makes a new one", async () => {
  const { server, bob, roomId, room, stateId, position } = await setup();
  try {
    const join = (path: string, body: unknown) =>
      server.request("POST", `${V3}${path}`, { token: bob.accessToken, body });
    assertEquals((await join(`/join/${room}`, {})).body.room_id, roomId);
    const firstId = await stateId("m.room.member", bob.userId);
    const before = await position();
    assertEquals((await join(`/rooms/${room}/join`, {})).status, 200);
    assertEquals(
      (await join(`/join/${encodeURIComponent("#hall:example.org:8448")}`, {})).status,
      200,
    );
    assertEquals(await stateId("m.room.member", bob.userId), firstId);
    assertEquals(await position(), before, "nothing was appended");

    // Extra keys of the body go into the member event; the membership stays the server's.
    const custom = await join(`/join/${room}`, {
      foo: "bar",
      membership: "leave",
      join_authorised_via_users_server: "@mallory:example.org:8448",
      reason: "hello",
    });
    assertEquals(custom.status, 200);
    const member = await server.request(
      "GET",
      `${V3}/rooms/${room}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      { token: bob.accessToken },
    );
    assertEquals(member.body, {
      membership: "join",
      displayname: "bob",
      foo: "bar",
      reason: "hello",
    });
    assert(await stateId("m.room.member", bob.userId) !== firstId);
  } finally {
    server.close();
  }
});
