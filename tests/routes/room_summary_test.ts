/**
 * `GET /v1/room_summary/{roomIdOrAlias}` over HTTP: the summary fields, the caller's membership,
 * who may see which room (anonymous callers only public, knockable or world-readable ones),
 * aliases, redacted state, and errors.
 */
import { assertEquals } from "../assert.ts";
import { type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V1 = "/_matrix/client/v1";
const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

async function createRoom(server: Server, user: RegisteredUser, body: Record<string, unknown>) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

function summary(server: Server, target: string, user?: RegisteredUser) {
  return server.request("GET", `${V1}/room_summary/${encodeURIComponent(target)}`, {
    token: user?.accessToken,
  });
}

Deno.test("room summary describes a room, with the caller's membership", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice, {
      preset: "public_chat",
      name: "Cheese",
      topic: "Tasty",
      room_alias_name: "cheese",
      creation_content: { type: "m.space" },
      initial_state: [
        { type: "m.room.avatar", state_key: "", content: { url: "mxc://example.org/a" } },
        {
          type: "m.room.encryption",
          state_key: "",
          content: { algorithm: "m.megolm.v1.aes-sha2" },
        },
      ],
    });
    const expected = {
      room_id: roomId,
      name: "Cheese",
      topic: "Tasty",
      avatar_url: "mxc://example.org/a",
      canonical_alias: "#cheese:example.org:8448",
      num_joined_members: 1,
      join_rule: "public",
      world_readable: false,
      guest_can_join: false,
      room_type: "m.space",
      encryption: "m.megolm.v1.aes-sha2",
      room_version: "10",
    };
    const mine = await summary(server, roomId, alice);
    assertEquals(mine.status, 200, JSON.stringify(mine.body));
    const version = mine.body.room_version;
    assertEquals(mine.body, { ...expected, room_version: version, membership: "join" });
    // By alias, for someone never in it, and anonymously (public room: no membership).
    const byAlias = await summary(server, "#cheese:example.org:8448", bob);
    assertEquals(byAlias.body, { ...expected, room_version: version, membership: "leave" });
    const anonymous = await summary(server, roomId);
    assertEquals(anonymous.body, { ...expected, room_version: version });

    // A redacted topic is no longer shown.
    const topicId = (await server.request(
      "GET",
      `${V3}/rooms/${encodeURIComponent(roomId)}/state/m.room.topic/?format=event`,
      { token: alice.accessToken },
    )).body.event_id;
    const redact = await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(topicId)}/r1`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(redact.status, 200);
    assertEquals((await summary(server, roomId)).body.topic, undefined);
    // MSC3266's unstable paths serve the same.
    const unstable = await server.request(
      "GET",
      `/_matrix/client/unstable/im.nheko.summary/summary/${encodeURIComponent(roomId)}`,
    );
    assertEquals(unstable.status, 200);
    assertEquals(unstable.body.room_id, roomId);
    // The path matrix-js-sdk calls when the server advertises im.nheko.summary.
    const sdkPath = await server.request(
      "GET",
      `/_matrix/client/unstable/im.nheko.summary/rooms/${encodeURIComponent(roomId)}/summary`,
    );
    assertEquals(sdkPath.body, unstable.body);
  } finally {
    server.close();
  }
});

Deno.test("room summary hides rooms the caller may not preview", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const privateRoom = await createRoom(server, alice, { preset: "private_chat" });
    const readable = await createRoom(server, alice, {
      preset: "private_chat",
      initial_state: [{
        type: "m.room.history_visibility",
        state_key: "",
        content: { history_visibility: "world_readable" },
      }],
    });
    for (const [target, user] of [[privateRoom, bob], [privateRoom, undefined]] as const) {
      const res = await summary(server, target, user);
      assertEquals(res.status, 404);
      assertEquals(res.body.errcode, "M_NOT_FOUND");
    }
    assertEquals((await summary(server, readable)).body.world_readable, true);
    // Invited: bob may look.
    const invite = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(privateRoom)}/invite`,
      { token: alice.accessToken, body: { user_id: bob.userId } },
    );
    assertEquals(invite.status, 200);
    const invited = await summary(server, privateRoom, bob);
    assertEquals(invited.status, 200);
    assertEquals(invited.body.membership, "invite");
    assertEquals(invited.body.join_rule, "invite");

    assertEquals((await summary(server, "!unknown:example.org:8448", bob)).status, 404);
    assertEquals((await summary(server, "#missing:example.org:8448", bob)).status, 404);
    assertEquals((await summary(server, "#remote:elsewhere.example", bob)).status, 404);
    assertEquals((await summary(server, "nonsense", bob)).status, 400);
    const badToken = await server.request(
      "GET",
      `${V1}/room_summary/${encodeURIComponent(readable)}`,
      { token: "tsr_at_nope" },
    );
    assertEquals(badToken.status, 401);
    assertEquals(badToken.body.errcode, "M_UNKNOWN_TOKEN");
  } finally {
    server.close();
  }
});
