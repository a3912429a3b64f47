/** Capabilities, TURN credentials and the user directory over HTTP. */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { publicRoomWith } from "./user_data_fixture.ts";

const V3 = "/_matrix/client/v3";

Deno.test("capabilities: room versions 1-12 stable, default 12, profile capabilities", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const res = await server.request("GET", `/_matrix/client/r0/capabilities`, {
      token: alice.accessToken,
    });
    assertEquals(res.status, 200);
    const caps = res.body.capabilities;
    assertEquals(caps["m.room_versions"].default, "12");
    assertEquals(Object.keys(caps["m.room_versions"].available).length, 12);
    assertEquals(caps["m.room_versions"].available["1"], "stable");
    assertEquals(caps["m.3pid_changes"], { enabled: false });
    assertEquals(caps["m.set_displayname"], { enabled: true });
    assertEquals(caps["m.profile_fields"].enabled, true);
    assertEquals((await server.request("GET", `${V3}/capabilities`)).status, 401);
  } finally {
    server.close();
  }
});

Deno.test("voip: {} without TURN; HMAC-SHA1 time-limited credentials with it", async () => {
  const plain = await startTestServer();
  try {
    const alice = await registerUser(plain, "alice");
    const res = await plain.request("GET", `${V3}/voip/turnServer`, { token: alice.accessToken });
    assertEquals([res.status, res.body], [200, {}]);
    assertEquals((await plain.request("GET", `${V3}/voip/turnServer`)).status, 401);
  } finally {
    plain.close();
  }
  const now = 1_700_000_000_000;
  const server = await startTestServer({
    TESSERA_TURN_URIS: "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349",
    TESSERA_TURN_SHARED_SECRET: "s3cret",
    TESSERA_TURN_TTL_SECONDS: "3600",
  }, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const res = await server.request("GET", `${V3}/voip/turnServer`, { token: alice.accessToken });
    const expiry = now / 1000 + 3600;
    assertEquals(res.body.username, `${expiry}:${alice.userId}`);
    assertEquals(res.body.ttl, 3600);
    assertEquals(res.body.uris, [
      "turn:turn.example.org:3478?transport=udp",
      "turns:turn.example.org:5349",
    ]);
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode("s3cret"),
      { name: "HMAC", hash: "SHA-1" },
      false,
      ["verify"],
    );
    const mac = Uint8Array.from(atob(res.body.password), (ch) => ch.charCodeAt(0));
    assertEquals(mac.length, 20);
    assert(
      await crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode(res.body.username)),
    );
  } finally {
    server.close();
  }
});

Deno.test("user directory: finds users sharing a room by ID or name, with limit", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const bobby = await registerUser(server, "bobby");
    await registerUser(server, "bobcat"); // shares no room with alice
    await server.request("PUT", `${V3}/profile/${bob.userId}/displayname`, {
      token: bob.accessToken,
      body: { displayname: "Robert Builder" },
    });
    await publicRoomWith(server.deps.sender, alice.userId, [bob.userId, bobby.userId]);
    const search = (body: unknown) =>
      server.request("POST", `${V3}/user_directory/search`, { token: alice.accessToken, body });

    let res = await search({ search_term: "bob" });
    assertEquals(res.status, 200);
    assertEquals(res.body.results.map((r: { user_id: string }) => r.user_id).sort(), [
      bob.userId,
      bobby.userId,
    ]);
    assertEquals(res.body.limited, false);
    res = await search({ search_term: "builder" });
    assertEquals(res.body.results, [{ user_id: bob.userId, display_name: "Robert Builder" }]);
    res = await search({ search_term: "bob", limit: 1 });
    assertEquals([res.body.results.length, res.body.limited], [1, true]);

    assertEquals((await search({})).body.errcode, "M_MISSING_PARAM");
    assertEquals((await search({ search_term: "x", limit: "ten" })).body.errcode, "M_BAD_JSON");
    assertEquals((await search("nope")).body.errcode, "M_NOT_JSON");
  } finally {
    server.close();
  }
});

Deno.test("voip config: TURN variables are checked at start-up", async () => {
  const { loadConfig, ConfigError } = await import("../../domain/config.ts");
  const bad = (env: Record<string, string>) => {
    try {
      loadConfig(env, { dev: true });
    } catch (error) {
      assert(error instanceof ConfigError);
      return error.variable;
    }
    return "accepted";
  };
  assertEquals(bad({ TESSERA_TURN_URIS: "turn:x" }), "TESSERA_TURN_SHARED_SECRET");
  assertEquals(bad({ TESSERA_TURN_SHARED_SECRET: "s" }), "TESSERA_TURN_URIS");
  assertEquals(
    bad({ TESSERA_TURN_URIS: "http://x", TESSERA_TURN_SHARED_SECRET: "s" }),
    "TESSERA_TURN_URIS",
  );
  const ttl = { TESSERA_TURN_URIS: "turn:x", TESSERA_TURN_SHARED_SECRET: "s" };
  assertEquals(bad({ ...ttl, TESSERA_TURN_TTL_SECONDS: "5" }), "TESSERA_TURN_TTL_SECONDS");
  assertEquals(loadConfig(ttl, { dev: true }).turn?.ttlSeconds, 86_400);
});
