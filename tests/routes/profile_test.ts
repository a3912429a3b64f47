/** Profiles over HTTP: legacy and v1.16 field paths, limits, and propagation to member events. */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { publicRoomWith } from "./user_data_fixture.ts";

const V3 = "/_matrix/client/v3";

Deno.test("profile: set, read and delete display name, avatar and custom fields", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const base = `${V3}/profile/${encodeURIComponent(alice.userId)}`;
    let res = await server.request("PUT", `${base}/displayname`, {
      token,
      body: { displayname: "Alice W" },
    });
    assertEquals(res.status, 200);
    res = await server.request("PUT", `${base}/avatar_url`, {
      token,
      body: { avatar_url: "mxc://example.org/abc" },
    });
    assertEquals(res.status, 200);
    res = await server.request("PUT", `${base}/m.tz`, { token, body: { "m.tz": "Europe/Paris" } });
    assertEquals(res.status, 200);
    res = await server.request("PUT", `${base}/org.example.job`, {
      token,
      body: { "org.example.job": { title: "dev" } },
    });
    assertEquals(res.status, 200);

    res = await server.request("GET", base);
    assertEquals(res.body.displayname, "Alice W");
    assertEquals(res.body.avatar_url, "mxc://example.org/abc");
    assertEquals(res.body["m.tz"], "Europe/Paris");
    assertEquals(res.body["org.example.job"], { title: "dev" });
    res = await server.request("GET", `/_matrix/client/r0/profile/${alice.userId}/displayname`);
    assertEquals(res.body, { displayname: "Alice W" });

    res = await server.request("DELETE", `${base}/m.tz`, { token });
    assertEquals(res.status, 200);
    res = await server.request("GET", `${base}/m.tz`);
    assertEquals(res.status, 404);
    assertEquals(res.body.errcode, "M_NOT_FOUND");
  } finally {
    server.close();
  }
});

Deno.test("profile: refuses other users, bad keys, bad values and oversized profiles", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const base = `${V3}/profile/${alice.userId}`;
    const put = (path: string, body: unknown, token = alice.accessToken) =>
      server.request("PUT", `${base}/${path}`, { token, body });

    assertEquals((await put("displayname", { displayname: "x" }, bob.accessToken)).status, 403);
    assertEquals((await put("displayname", { displayname: 5 })).body.errcode, "M_BAD_JSON");
    assertEquals((await put("avatar_url", { avatar_url: "http://x" })).body.errcode, "M_BAD_JSON");
    assertEquals((await put("displayname", {})).body.errcode, "M_MISSING_PARAM");
    assertEquals((await put("displayname", "not json")).body.errcode, "M_NOT_JSON");
    assertEquals((await put("Bad-Key", { "Bad-Key": 1 })).body.errcode, "M_INVALID_PARAM");
    const longKey = `org.${"a".repeat(300)}`;
    assertEquals((await put(longKey, { [longKey]: 1 })).body.errcode, "M_KEY_TOO_LARGE");
    const big = "x".repeat(40_000);
    assertEquals((await put("org.example.a", { "org.example.a": big })).status, 200);
    const res = await put("org.example.b", { "org.example.b": big });
    assertEquals(res.body.errcode, "M_PROFILE_TOO_LARGE");
    const noToken = await server.request("PUT", `${base}/displayname`, {
      body: { displayname: "x" },
    });
    assertEquals(noToken.status, 401);
    assertEquals((await server.request("GET", `${V3}/profile/not-a-user`)).status, 400);
    assertEquals(
      (await server.request("GET", `${V3}/profile/@nobody:example.org:8448`)).status,
      404,
    );
  } finally {
    server.close();
  }
});

Deno.test("profile: a new display name reaches the user's member events in joined rooms", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoomWith(server.deps.sender, alice.userId);
    const res = await server.request("PUT", `${V3}/profile/${alice.userId}/displayname`, {
      token: alice.accessToken,
      body: { displayname: "Alice Renamed" },
    });
    assertEquals(res.status, 200);
    const id = await server.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.member",
      alice.userId,
    );
    assert(id);
    const event = await server.deps.eventStore.getEvent(id);
    assertEquals(event?.pdu.content.displayname, "Alice Renamed");
    assertEquals(event?.pdu.content.membership, "join");
  } finally {
    server.close();
  }
});

Deno.test("profile: a user who never set one has the localpart as display name", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const base = `${V3}/profile/${encodeURIComponent(alice.userId)}`;
    assertEquals((await server.request("GET", base)).body, { displayname: "alice" });
    const name = await server.request("GET", `${base}/displayname`);
    assertEquals([name.status, name.body], [200, { displayname: "alice" }]);
    const avatar = await server.request("GET", `${base}/avatar_url`);
    assertEquals([avatar.status, avatar.body.errcode], [404, "M_NOT_FOUND"]);

    // Setting another field keeps the default name; deleting the name removes it.
    const token = alice.accessToken;
    await server.request("PUT", `${base}/avatar_url`, {
      token,
      body: { avatar_url: "mxc://example.org/a" },
    });
    assertEquals((await server.request("GET", base)).body, {
      displayname: "alice",
      avatar_url: "mxc://example.org/a",
    });
    await server.request("DELETE", `${base}/displayname`, { token });
    assertEquals((await server.request("GET", base)).body, { avatar_url: "mxc://example.org/a" });

    // A local user ID without an account is still unknown.
    const nobody = await server.request("GET", `${V3}/profile/@nobody:example.org:8448`);
    assertEquals([nobody.status, nobody.body.errcode], [404, "M_NOT_FOUND"]);
  } finally {
    server.close();
  }
});
