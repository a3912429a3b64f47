/**
 * Resource limits of the write path and of replay (issue 8, finding 9): whatever the live path
 * accepts, many events near the 64 KiB PDU limit sent at once into one room, large state
 * events, members with user IDs at the length limit, and the notification writes that ride in
 * each event's commit, must commit (however the sender's batch folds them) and must be rebuilt
 * by replay into projections equal to the live ones.
 */
import { assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { registerUser } from "../routes/client_harness.ts";
import { replay } from "../../kv/replay.ts";

const V3 = "/_matrix/client/v3";
/** Brings a message's PDU (signatures, hashes, auth events) close to 65,536 bytes. */
const NEAR_LIMIT = "x".repeat(64_000);

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** Replay the server's store into a fresh one and return the differences found. */
async function replayDifferences(server: Server) {
  const target = await Deno.openKv(":memory:");
  try {
    const report = await replay({ source: server.kv, target });
    return { events: report.events, differences: report.differences };
  } finally {
    target.close();
  }
}

Deno.test("many messages near the PDU limit sent at once into one room all commit, and replay rebuilds them", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const others = await Promise.all(["bob", "carol", "dave"].map((u) => registerUser(server, u)));
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      // Members may set state, so two users' state shares the room.
      body: { preset: "public_chat", power_level_content_override: { state_default: 0 } },
    });
    assertEquals(created.status, 200);
    const roomId = encodeURIComponent(created.body.room_id);
    for (const user of others) {
      const joined = await server.request("POST", `${V3}/rooms/${roomId}/join`, {
        token: user.accessToken,
        body: {},
      });
      assertEquals(joined.status, 200);
    }
    // Sent at once, so the sender folds them into batches far over one commit's 800 KiB; each
    // notifies three members, so hook writes ride in the same commits.
    const sends = await Promise.all(
      Array.from(
        { length: 48 },
        (_, i) =>
          server.request("PUT", `${V3}/rooms/${roomId}/send/m.room.message/big${i}`, {
            token: alice.accessToken,
            body: { msgtype: "m.text", body: `${i} @bob ${NEAR_LIMIT}` },
          }),
      ),
    );
    assertEquals(sends.map((r) => r.status), sends.map(() => 200));
    // Two users' state, each within the per-user state cap (1 MiB in one room).
    const states = await Promise.all(
      Array.from(
        { length: 28 },
        (_, i) =>
          server.request("PUT", `${V3}/rooms/${roomId}/state/org.example.big/k${i}`, {
            token: (i % 2 === 0 ? alice : others[0]).accessToken,
            body: { blob: `${i} ${NEAR_LIMIT}` },
          }),
      ),
    );
    assertEquals(states.map((r) => r.status), states.map(() => 200));
    const notified = await server.request("GET", `${V3}/notifications?limit=100`, {
      token: others[0].accessToken,
    });
    assertEquals(notified.status, 200);
    // Every message notified bob; state of an unknown type notifies nobody.
    assertEquals(notified.body.notifications.length, 48);

    const { events, differences } = await replayDifferences(server);
    assertEquals(differences, []);
    assertEquals(events >= 48 + 28 + 4, true);
  } finally {
    server.close();
  }
});

Deno.test("members with user IDs at the length limit joining at once all commit, and replay rebuilds them", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    assertEquals(created.status, 200);
    const roomId = encodeURIComponent(created.body.room_id);
    // "@" + localpart + ":example.org:8448" is 255 bytes, the longest user ID allowed.
    const serverPart = ":example.org:8448";
    const users = await Promise.all(Array.from({ length: 64 }, (_, i) => {
      const localpart = `${String(i).padStart(3, "0")}${"u".repeat(254 - serverPart.length - 3)}`;
      return registerUser(server, localpart);
    }));
    assertEquals(users[0].userId.length, 255);
    const joins = await Promise.all(
      users.map((user) =>
        server.request("POST", `${V3}/rooms/${roomId}/join`, { token: user.accessToken, body: {} })
      ),
    );
    assertEquals(joins.map((r) => r.status), joins.map(() => 200));

    const { differences } = await replayDifferences(server);
    assertEquals(differences, []);
  } finally {
    server.close();
  }
});
