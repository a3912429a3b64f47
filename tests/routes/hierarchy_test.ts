/**
 * `GET /v1/rooms/{roomId}/hierarchy` over HTTP: depth-first order of m.space.child events, the
 * rooms a user may see (joined, invited, public, knockable, world-readable, restricted through
 * a room they are in), suggested_only, max_depth, limit and from, redacted children, errors.
 */
import { assert, assertEquals } from "../assert.ts";
import { type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V1 = "/_matrix/client/v1";
const V3 = "/_matrix/client/v3";
const SERVER = "example.org:8448";
type Server = Awaited<ReturnType<typeof startTestServer>>;

async function createRoom(server: Server, user: RegisteredUser, body: Record<string, unknown>) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function addChild(
  server: Server,
  user: RegisteredUser,
  spaceId: string,
  childId: string,
  content: Record<string, unknown> = {},
) {
  const res = await server.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(spaceId)}/state/m.space.child/${encodeURIComponent(childId)}`,
    { token: user.accessToken, body: { via: [SERVER], ...content } },
  );
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function hierarchy(server: Server, user: RegisteredUser, spaceId: string, query = "") {
  return await server.request(
    "GET",
    `${V1}/rooms/${encodeURIComponent(spaceId)}/hierarchy${query}`,
    { token: user.accessToken },
  );
}

const space = { preset: "public_chat", creation_content: { type: "m.space" } };
const ids = (res: { body: { rooms: { room_id: string }[] } }) =>
  res.body.rooms.map((r) => r.room_id);

Deno.test("hierarchy walks a space depth-first in the spec's child order", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const root = await createRoom(server, alice, { ...space, name: "Root", topic: "Top" });
    const sub = await createRoom(server, alice, { ...space, name: "Sub" });
    const a = await createRoom(server, alice, { preset: "public_chat", name: "A" });
    const b = await createRoom(server, alice, { preset: "public_chat", name: "B" });
    const c = await createRoom(server, alice, { preset: "public_chat", name: "C" });
    // Ordered by `order` first (those without last), then by time.
    await addChild(server, alice, root, b);
    await addChild(server, alice, root, sub, { order: "a" });
    await addChild(server, alice, root, a, { order: "b", suggested: true });
    await addChild(server, alice, sub, c);
    // A child without via is no child; an invalid order counts as none.
    await addChild(server, alice, root, "!nothing:example.org:8448", { via: [] });

    const res = await hierarchy(server, alice, root);
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(ids(res), [root, sub, c, a, b]);
    const [first] = res.body.rooms;
    assertEquals(first.name, "Root");
    assertEquals(first.topic, "Top");
    assertEquals(first.room_type, "m.space");
    assertEquals(first.num_joined_members, 1);
    assertEquals(first.join_rule, "public");
    assertEquals(first.world_readable, false);
    assertEquals(first.guest_can_join, false);
    assertEquals(
      first.children_state.map((e: { state_key: string }) => e.state_key),
      [sub, a, b],
    );
    const child = first.children_state[0];
    assertEquals(child.type, "m.space.child");
    assertEquals(child.sender, alice.userId);
    assert(typeof child.origin_server_ts === "number");
    assertEquals(child.event_id, undefined, "stripped state carries no event ID");
    // A room that is not a space lists no children.
    assertEquals(res.body.rooms[2].children_state, []);
    assertEquals(res.body.next_batch, undefined);

    assertEquals(ids(await hierarchy(server, alice, root, "?suggested_only=true")), [root, a]);
    assertEquals(ids(await hierarchy(server, alice, root, "?max_depth=1")), [root, sub, a, b]);
    assertEquals(ids(await hierarchy(server, alice, root, "?max_depth=0")), [root]);

    // Pages of two, with the same walk; changing the request mid-way is refused.
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 5; i++) {
      const page = await hierarchy(
        server,
        alice,
        root,
        `?limit=2${from ? `&from=${encodeURIComponent(from)}` : ""}`,
      );
      assertEquals(page.status, 200);
      seen.push(...ids(page));
      from = page.body.next_batch;
      if (!from) break;
    }
    assertEquals(seen, [root, sub, c, a, b]);
    const first2 = await hierarchy(server, alice, root, "?limit=2");
    const changed = await hierarchy(
      server,
      alice,
      root,
      `?limit=2&suggested_only=true&from=${encodeURIComponent(first2.body.next_batch)}`,
    );
    assertEquals(changed.status, 400);
    assertEquals(changed.body.errcode, "M_INVALID_PARAM");
    // A child listed twice (here: a loop back to the root) appears once.
    await addChild(server, alice, sub, root);
    assertEquals(ids(await hierarchy(server, alice, root)), [root, sub, c, a, b]);
  } finally {
    server.close();
  }
});

Deno.test("hierarchy shows only rooms the user may see, and redacted children drop out", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const root = await createRoom(server, alice, space);
    const privateRoom = await createRoom(server, alice, { preset: "private_chat", name: "P" });
    const invited = await createRoom(server, alice, { preset: "private_chat", name: "I" });
    const readable = await createRoom(server, alice, {
      preset: "private_chat",
      initial_state: [{
        type: "m.room.history_visibility",
        state_key: "",
        content: { history_visibility: "world_readable" },
      }],
    });
    const knock = await createRoom(server, alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [{
        type: "m.room.join_rules",
        state_key: "",
        content: { join_rule: "knock" },
      }],
    });
    const restricted = await createRoom(server, alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [{
        type: "m.room.join_rules",
        state_key: "",
        content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: root }] },
      }],
    });
    const gone = await createRoom(server, alice, { preset: "public_chat", name: "Gone" });
    for (const child of [privateRoom, invited, readable, knock, restricted]) {
      await addChild(server, alice, root, child);
    }
    const goneEvent = await addChild(server, alice, root, gone);
    const invite = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(invited)}/invite`,
      { token: alice.accessToken, body: { user_id: bob.userId } },
    );
    assertEquals(invite.status, 200);
    const redact = await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(root)}/redact/${encodeURIComponent(goneEvent)}/r1`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(redact.status, 200);

    // Bob is not in the space yet: the restricted room is hidden, the private one always.
    const before = await hierarchy(server, bob, root);
    assertEquals(before.status, 200);
    assertEquals(new Set(ids(before)), new Set([root, invited, readable, knock]));
    // Redacted: the child lost its via and is no child any more.
    assert(
      !before.body.rooms[0].children_state.some((e: { state_key: string }) => e.state_key === gone),
    );
    const join = await server.request("POST", `${V3}/rooms/${encodeURIComponent(root)}/join`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(join.status, 200);
    const after = await hierarchy(server, bob, root);
    assertEquals(new Set(ids(after)), new Set([root, invited, readable, knock, restricted]));
    const entry = after.body.rooms.find((r: { room_id: string }) => r.room_id === restricted);
    assertEquals(entry.allowed_room_ids, [root]);
    assertEquals(entry.join_rule, "restricted");
    assertEquals(entry.room_version, "10");

    // A root the user may not see is 403; bad input is 400; no token 401.
    const hidden = await hierarchy(server, bob, privateRoom);
    assertEquals(hidden.status, 403);
    assertEquals(hidden.body.errcode, "M_FORBIDDEN");
    assertEquals((await hierarchy(server, bob, "!unknown:example.org:8448")).status, 403);
    for (
      const query of ["?limit=0", "?limit=x", "?max_depth=-1", "?from=zz", "?suggested_only=1"]
    ) {
      const res = await hierarchy(server, bob, root, query);
      assertEquals(res.status, 400, query);
    }
    assertEquals((await hierarchy(server, bob, "not-a-room")).status, 400);
    const anonymous = await server.request(
      "GET",
      `${V1}/rooms/${encodeURIComponent(root)}/hierarchy`,
    );
    assertEquals(anonymous.status, 401);
    // MSC2946's unstable path serves the same.
    const unstable = await server.request(
      "GET",
      `/_matrix/client/unstable/org.matrix.msc2946/rooms/${encodeURIComponent(root)}/hierarchy`,
      { token: bob.accessToken },
    );
    assertEquals(unstable.body, after.body);
  } finally {
    server.close();
  }
});
