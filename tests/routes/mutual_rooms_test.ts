/** `GET /v1/mutual_rooms` over HTTP: rooms both users are joined to, paging, and errors. */
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

async function join(server: Server, user: RegisteredUser, roomId: string) {
  const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
    token: user.accessToken,
    body: {},
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
}

function mutual(server: Server, user: RegisteredUser, query: string, base = V1) {
  return server.request("GET", `${base}/mutual_rooms${query}`, { token: user.accessToken });
}

Deno.test("mutual rooms lists the rooms both users are joined to", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const shared = [
      await createRoom(server, alice, { preset: "public_chat" }),
      await createRoom(server, alice, { preset: "public_chat" }),
    ];
    for (const roomId of shared) await join(server, bob, roomId);
    // Alice's own room, and one bob was only invited to.
    await createRoom(server, alice, { preset: "public_chat" });
    await createRoom(server, alice, { preset: "private_chat", invite: [bob.userId] });
    // One bob left.
    const left = await createRoom(server, alice, { preset: "public_chat" });
    await join(server, bob, left);
    const leave = await server.request("POST", `${V3}/rooms/${encodeURIComponent(left)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(leave.status, 200);

    const res = await mutual(server, alice, `?user_id=${encodeURIComponent(bob.userId)}`);
    assertEquals(res.status, 200);
    assertEquals(res.body, { joined: [...shared].sort(), count: 2 });
    const none = await mutual(server, alice, `?user_id=${encodeURIComponent(carol.userId)}`);
    assertEquals(none.body, { joined: [], count: 0 });
    // An unknown user shares nothing.
    const unknown = await mutual(server, alice, "?user_id=%40nobody%3Aexample.org%3A8448");
    assertEquals(unknown.body, { joined: [], count: 0 });
    // Continuing after the first room gives the second.
    const sorted = [...shared].sort();
    const rest = await mutual(
      server,
      alice,
      `?user_id=${encodeURIComponent(bob.userId)}&from=${encodeURIComponent(sorted[0])}`,
    );
    assertEquals(rest.body, { joined: [sorted[1]], count: 2 });
    // MSC2666's unstable path.
    const unstable = await mutual(
      server,
      alice,
      `?user_id=${encodeURIComponent(bob.userId)}`,
      "/_matrix/client/unstable/uk.half-shot.msc2666/user",
    );
    assertEquals(unstable.body, res.body);
  } finally {
    server.close();
  }
});

Deno.test("mutual rooms refuses a missing, invalid or own user ID and bad tokens", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const cases: [string, string][] = [
      ["", "M_MISSING_PARAM"],
      ["?user_id=bob", "M_INVALID_PARAM"],
      [`?user_id=${encodeURIComponent(alice.userId)}`, "M_INVALID_PARAM"],
      ["?user_id=%40bob%3Aexample.org%3A8448&from=zz", "M_INVALID_PARAM"],
    ];
    for (const [query, errcode] of cases) {
      const res = await mutual(server, alice, query);
      assertEquals(res.status, 400, query);
      assertEquals(res.body.errcode, errcode, query);
    }
    const anonymous = await server.request("GET", `${V1}/mutual_rooms?user_id=%40b%3Ax`);
    assertEquals(anonymous.status, 401);
  } finally {
    server.close();
  }
});
