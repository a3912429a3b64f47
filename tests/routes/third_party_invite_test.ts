/**
 * Third-party invites over real HTTP routes, with an HTTPS identity server on loopback: an
 * address bound to a user invites that user; an unbound one becomes an m.room.third_party_invite
 * event, exchanged for a member invite when the identity server reports the binding (onbind)
 * or the joiner brings the signed proof (/join's third_party_signed), and refused when the
 * signature or the key's validity does not hold.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { startIdentityServer } from "./threepid_fixtures.ts";

const V3 = "/_matrix/client/v3";
const ONBIND = "/_matrix/federation/v1/3pid/onbind";

async function setup() {
  const idServer = await startIdentityServer();
  const server = await startTestServer({
    TESSERA_OUTBOUND_ALLOW_PRIVATE: "on",
    TESSERA_OUTBOUND_TLS_VERIFY: "off",
  });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const close = async () => {
    server.close();
    await idServer.close();
  };
  const createRoom = async (body: Record<string, unknown> = {}) => {
    const res = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "private_chat", ...body },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    return res.body.room_id as string;
  };
  const invite3pid = (token: string, roomId: string, address: string) =>
    server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/invite`, {
      token,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        medium: "email",
        address,
      },
    });
  const member = (roomId: string, userId: string) =>
    server.request(
      "GET",
      `${V3}/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${encodeURIComponent(userId)}`,
      { token: alice.accessToken },
    );
  /** What the identity server sends once `address` is bound to `mxid`. */
  const onbind = async (address: string, mxid: string) => {
    const invites = [];
    for (const invite of idServer.invites.filter((i) => i.address === address)) {
      invites.push({
        ...invite,
        mxid,
        signed: await idServer.sign({ mxid, token: invite.token }),
      });
    }
    return server.request("POST", ONBIND, {
      body: await idServer.sign({ medium: "email", address, mxid, invites }),
    });
  };
  return { server, idServer, alice, bob, close, createRoom, invite3pid, member, onbind };
}

Deno.test("3pid invite: a bound address invites its user, by /invite and by createRoom", async () => {
  const { idServer, alice, bob, close, createRoom, invite3pid, member } = await setup();
  try {
    idServer.bindDirectly("email", "bob@example.org", bob.userId);
    const roomId = await createRoom();
    const res = await invite3pid(alice.accessToken, roomId, "Bob@Example.org");
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals((await member(roomId, bob.userId)).body.membership, "invite");
    // The lookup was hashed: the identity server never saw the address itself.
    const lookup = idServer.requests.find((r) => r.path.endsWith("/lookup"))!;
    assertEquals(lookup.body?.algorithm, "sha256");
    assert(!JSON.stringify(lookup.body).includes("bob@example.org"));

    const other = await createRoom({
      invite_3pid: [{
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        medium: "email",
        address: "bob@example.org",
      }],
    });
    assertEquals((await member(other, bob.userId)).body.membership, "invite");
  } finally {
    await close();
  }
});

Deno.test("3pid invite: an unbound address is stored and exchanged on bind, even after the inviter left", async () => {
  const { server, idServer, alice, bob, close, createRoom, member, onbind } = await setup();
  try {
    const carol = await registerUser(server, "carol");
    const roomId = await createRoom({ invite: [carol.userId] });
    await server.request("POST", `${V3}/join/${encodeURIComponent(roomId)}`, {
      token: carol.accessToken,
      body: {},
    });
    // Carol has no power, but invites need none in a private chat: third-party ones neither.
    const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/invite`, {
      token: carol.accessToken,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        medium: "email",
        address: "new@example.org",
      },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(idServer.invites.length, 1);
    assertEquals(idServer.invites[0].sender, carol.userId);
    const token = idServer.invites[0].token;
    const tpi = await server.request(
      "GET",
      `${V3}/rooms/${encodeURIComponent(roomId)}/state/m.room.third_party_invite/${token}`,
      { token: alice.accessToken },
    );
    assertEquals(tpi.body.display_name, "Bob");
    assertEquals(tpi.body.public_keys.length, 2);

    // The inviter leaves; the address is bound to Bob afterwards.
    await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/leave`, {
      token: carol.accessToken,
      body: {},
    });
    const bound = await onbind("new@example.org", bob.userId);
    assertEquals(bound.status, 200, JSON.stringify(bound.body));
    const invited = await member(roomId, bob.userId);
    assertEquals(invited.body.membership, "invite");
    assertEquals(invited.body.third_party_invite.display_name, "Bob");
    const joined = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    assertEquals((await member(roomId, bob.userId)).body.membership, "join");
  } finally {
    await close();
  }
});

Deno.test("3pid invite: a revoked key or a signature by another key is refused, and nothing is written", async () => {
  const { idServer, alice, bob, close, createRoom, invite3pid, member, onbind, server } =
    await setup();
  try {
    const roomId = await createRoom();
    assertEquals((await invite3pid(alice.accessToken, roomId, "x@example.org")).status, 200);
    const token = idServer.invites[0].token;
    // Signed by a key the invite never offered.
    const stranger = await startIdentityServer();
    const forged = await server.request("POST", ONBIND, {
      body: {
        invites: [{
          ...idServer.invites[0],
          mxid: bob.userId,
          signed: await stranger.sign({ mxid: bob.userId, token }),
        }],
      },
    });
    await stranger.close();
    assertEquals(forged.status, 403);
    assertEquals((await member(roomId, bob.userId)).status, 404);

    idServer.revokeKeys();
    const revoked = await onbind("x@example.org", bob.userId);
    assertEquals(revoked.status, 403);
    assertEquals((await member(roomId, bob.userId)).status, 404);
    const join = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(join.status, 403);
  } finally {
    await close();
  }
});

Deno.test("3pid invite: /join with third_party_signed exchanges the invite first", async () => {
  const { idServer, alice, bob, close, createRoom, invite3pid, member, server } = await setup();
  try {
    const roomId = await createRoom();
    assertEquals((await invite3pid(alice.accessToken, roomId, "y@example.org")).status, 200);
    const signed = await idServer.sign(
      { mxid: bob.userId, sender: alice.userId, token: idServer.invites[0].token },
      true,
    );
    const joined = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
      token: bob.accessToken,
      body: { third_party_signed: signed },
    });
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    assertEquals((await member(roomId, bob.userId)).body.membership, "join");
    // Someone else's proof does not let a third user in.
    const carol = await registerUser(server, "carol");
    const stolen = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
      token: carol.accessToken,
      body: { third_party_signed: signed },
    });
    assertEquals(stolen.status, 400);
  } finally {
    await close();
  }
});

Deno.test("3pid invite: bad requests are refused before the identity server is asked", async () => {
  const { idServer, alice, bob, close, createRoom, server } = await setup();
  try {
    const roomId = await createRoom();
    const path = `${V3}/rooms/${encodeURIComponent(roomId)}/invite`;
    const noToken = await server.request("POST", path, {
      token: alice.accessToken,
      body: { id_server: idServer.name, medium: "email", address: "z@example.org" },
    });
    assertEquals(noToken.status, 400);
    const badServer = await server.request("POST", path, {
      token: alice.accessToken,
      body: { id_server: "a b", id_access_token: "t", medium: "email", address: "z@example.org" },
    });
    assertEquals(badServer.status, 400);
    // Not in the room.
    const outsider = await server.request("POST", path, {
      token: bob.accessToken,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        medium: "email",
        address: "z@example.org",
      },
    });
    assertEquals(outsider.status, 403);
    assertEquals(idServer.requests.length, 0);
  } finally {
    await close();
  }
});
