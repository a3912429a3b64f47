/**
 * Reporting content: rooms, events and users; reports are kept for administrators, and a
 * refused report writes nothing.
 */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";

Deno.test("reports: rooms, events and users are kept for administrators", async () => {
  // Reports are ordered by the time they arrive (to the millisecond): a clock that moves on each
  // reading keeps the expected order exact.
  let clock = 1_800_000_000_000;
  const server = await startTestServer({}, { now: () => clock++ });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const room = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "private_chat" },
    });
    const roomId = room.body.room_id as string;
    const sent = await server.request("PUT", `${V3}/rooms/${roomId}/send/m.room.message/1`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "spam" },
    });
    const eventId = sent.body.event_id as string;

    const eventReport = await server.request("POST", `${V3}/rooms/${roomId}/report/${eventId}`, {
      token: alice.accessToken,
      body: { reason: "spam", score: -100 },
    });
    assertEquals([eventReport.status, eventReport.body], [200, {}]);
    // Bob is not in the room: the same 404 as for an unknown event, and nothing is kept.
    const outsider = await server.request("POST", `${V3}/rooms/${roomId}/report/${eventId}`, {
      token: bob.accessToken,
      body: { reason: "x" },
    });
    assertEquals([outsider.status, outsider.body.errcode], [404, "M_NOT_FOUND"]);
    const unknown = await server.request(
      "POST",
      `${V3}/rooms/${roomId}/report/$${"A".repeat(43)}`,
      {
        token: alice.accessToken,
        body: { reason: "x" },
      },
    );
    assertEquals(unknown.status, 404);
    const badScore = await server.request("POST", `${V3}/rooms/${roomId}/report/${eventId}`, {
      token: alice.accessToken,
      body: { score: 5 },
    });
    assertEquals([badScore.status, badScore.body.errcode], [400, "M_INVALID_PARAM"]);

    // A room report needs no membership; an unknown room is 404.
    const roomReport = await server.request("POST", `${V3}/rooms/${roomId}/report`, {
      token: bob.accessToken,
      body: { reason: "" },
    });
    assertEquals(roomReport.status, 200);
    const noRoom = await server.request("POST", `${V3}/rooms/!missing:example.org:8448/report`, {
      token: bob.accessToken,
      body: { reason: "x" },
    });
    assertEquals(noRoom.status, 404);
    const missingReason = await server.request("POST", `${V3}/rooms/${roomId}/report`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(missingReason.status, 400);

    // Users: answered alike whether or not the account exists.
    for (const userId of [alice.userId, "@ghost:example.org:8448"]) {
      const res = await server.request("POST", `${V3}/users/${userId}/report`, {
        token: bob.accessToken,
        body: { reason: "rude" },
      });
      assertEquals([res.status, res.body], [200, {}]);
    }
    const tooLong = await server.request("POST", `${V3}/users/${alice.userId}/report`, {
      token: bob.accessToken,
      body: { reason: "x".repeat(2001) },
    });
    assertEquals([tooLong.status, tooLong.body.errcode], [413, "M_TOO_LARGE"]);

    const kept = await server.deps.reports.list(undefined, 100);
    assertEquals(kept.map((r) => [r.kind, r.reporter, r.roomId ?? r.userId, r.reason]), [
      ["event", alice.userId, roomId, "spam"],
      ["room", bob.userId, roomId, ""],
      ["user", bob.userId, alice.userId, "rude"],
      ["user", bob.userId, "@ghost:example.org:8448", "rude"],
    ]);
    assertEquals(kept[0].eventId, eventId);
    assertEquals(kept[0].score, -100);
    const afterFirst = await server.deps.reports.list(kept[0].reportId, 100);
    assertEquals(afterFirst.length, 3);
  } finally {
    await server.close();
  }
});

Deno.test("third-party networks: no bridges, so no protocols and empty lookups", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const get = (path: string) =>
      server.request("GET", `${V3}${path}`, { token: alice.accessToken });
    assertEquals((await get("/thirdparty/protocols")).body, {});
    for (
      const path of ["/thirdparty/protocol/irc", "/thirdparty/location/irc", "/thirdparty/user/irc"]
    ) {
      assertEquals((await get(path)).status, 404);
    }
    assertEquals((await get("/thirdparty/location?alias=%23a:b")).body, []);
    assertEquals((await get("/thirdparty/user?userid=@a:b")).body, []);
    assertEquals((await get("/thirdparty/user")).body.errcode, "M_MISSING_PARAM");
    assertEquals((await server.request("GET", `${V3}/thirdparty/protocols`)).status, 401);
  } finally {
    await server.close();
  }
});

Deno.test("support: /.well-known/matrix/support is 404 until configured, then lists contacts", async () => {
  const none = await startTestServer();
  try {
    assertEquals((await none.request("GET", "/.well-known/matrix/support")).status, 404);
  } finally {
    await none.close();
  }
  const server = await startTestServer({
    TESSERA_SUPPORT_CONTACTS: "@admin:example.org:8448, help@example.org",
    TESSERA_SUPPORT_PAGE: "https://example.org/help",
  });
  try {
    const res = await server.request("GET", "/.well-known/matrix/support");
    assertEquals(res.body, {
      contacts: [
        { role: "m.role.admin", matrix_id: "@admin:example.org:8448" },
        { role: "m.role.admin", email_address: "help@example.org" },
      ],
      support_page: "https://example.org/help",
    });
  } finally {
    await server.close();
  }
});
