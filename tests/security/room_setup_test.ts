/**
 * Write access when rooms are set up (issue 8): membership PUTs go through the membership rules
 * (finding 4), createRoom is all or nothing (finding 14), and alias events are honest: sent by
 * the user who acted (finding 15), naming only aliases of the room (finding 16). Redactions are
 * in write_access_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

function roomPath(roomId: string): string {
  return `${V3}/rooms/${encodeURIComponent(roomId)}`;
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const carol = await registerUser(server, "carol");
  return { server, alice, bob, carol };
}

async function createRoom(server: Server, user: RegisteredUser, body: Record<string, unknown>) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function stateEvent(server: Server, roomId: string, type: string, key = "") {
  const id = await server.deps.eventStore.currentStateEventId(roomId, type, key);
  return id ? (await server.deps.eventStore.getEvent(id))!.pdu : undefined;
}

// ---- Finding 4: restricted joins through PUT /state ----

async function restrictedRoom(server: Server, alice: RegisteredUser) {
  const space = await createRoom(server, alice, { preset: "public_chat", room_version: "10" });
  const roomId = await createRoom(server, alice, {
    preset: "private_chat",
    room_version: "10",
    initial_state: [{
      type: "m.room.join_rules",
      content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] },
    }],
  });
  return { space, roomId };
}

Deno.test("finding 4: a member PUT naming an authoriser does not let an ineligible user in", async () => {
  const { server, alice, bob } = await setup();
  try {
    const { roomId } = await restrictedRoom(server, alice);
    const head = await server.deps.eventStore.roomHead(roomId);
    const res = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: { membership: "join", join_authorised_via_users_server: alice.userId },
      },
    );
    assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"], JSON.stringify(res.body));
    assertEquals((await server.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);
    assertEquals(await stateEvent(server, roomId, "m.room.member", bob.userId), undefined);
  } finally {
    server.close();
  }
});

Deno.test("finding 4: an eligible user's member PUT gets an authoriser the server chose", async () => {
  const { server, alice, bob, carol } = await setup();
  try {
    const { space, roomId } = await restrictedRoom(server, alice);
    assertEquals(
      (await server.request("POST", `${roomPath(space)}/join`, {
        token: bob.accessToken,
        body: {},
      })).status,
      200,
    );
    // The client names Carol, who is not in the room; the server ignores the client's choice
    // and names a joined local user who may invite (Alice).
    const res = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: {
          membership: "join",
          displayname: "B",
          join_authorised_via_users_server: carol.userId,
        },
      },
    );
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const member = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(member!.content.membership, "join");
    assertEquals(member!.content.join_authorised_via_users_server, alice.userId);
    assertEquals(member!.content.displayname, "B");

    // Once joined, a profile change carries no authoriser, whatever the client sends.
    const again = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: {
          membership: "join",
          displayname: "B2",
          join_authorised_via_users_server: alice.userId,
        },
      },
    );
    assertEquals(again.status, 200);
    const updated = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(updated!.content.displayname, "B2");
    assert(!("join_authorised_via_users_server" in updated!.content));
  } finally {
    server.close();
  }
});

Deno.test("finding 4: member PUTs keep the membership rules (bad membership, remote invite)", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await createRoom(server, alice, { preset: "public_chat" });
    const put = (target: string, body: unknown) =>
      server.request(
        "PUT",
        `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(target)}`,
        { token: alice.accessToken, body },
      );
    assertEquals((await put(bob.userId, { membership: "party" })).status, 400);
    assertEquals((await put(bob.userId, {})).status, 400);
    const remote = await put("@zed:elsewhere.org", { membership: "invite" });
    assertEquals([remote.status, remote.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals((await put(bob.userId, { membership: "invite" })).status, 200);
    assertEquals(
      (await stateEvent(server, roomId, "m.room.member", bob.userId))!.content.membership,
      "invite",
    );
  } finally {
    server.close();
  }
});
