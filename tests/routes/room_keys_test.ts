/**
 * The room_keys API over HTTP: version create/read/update/delete, keys at the three levels with
 * exact counts and etags, the spec's error codes (M_WRONG_ROOM_KEYS_VERSION with
 * current_version, M_MISSING_PARAM, M_NOT_FOUND), a 2,500-session upload, concurrent uploads,
 * the r0 prefix, and one user never seeing another's backup.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { e2eeKeys } from "../../kv/schema.ts";

const V3 = "/_matrix/client/v3";
const ALG = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM = "!room:example.org";
const R = encodeURIComponent(ROOM);

function keyData(firstMessageIndex = 0, forwardedCount = 0, isVerified = false, tag = "x") {
  return {
    first_message_index: firstMessageIndex,
    forwarded_count: forwardedCount,
    is_verified: isVerified,
    session_data: { ephemeral: "e".repeat(43), ciphertext: `${tag}${"c".repeat(600)}`, mac: "m" },
  };
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const call = (method: string, path: string, body?: unknown) =>
    server.request(method, `${V3}${path}`, { token: alice.accessToken, body });
  return { server, alice, call };
}

Deno.test("room_keys versions: create, read current, update, delete, fall back", async () => {
  const { server, call } = await setup();
  try {
    const none = await call("GET", "/room_keys/version");
    assertEquals([none.status, none.body.errcode], [404, "M_NOT_FOUND"]);
    const created = await call("POST", "/room_keys/version", {
      algorithm: ALG,
      auth_data: { public_key: "pk1", signatures: {} },
    });
    assertEquals(created.status, 200);
    assertEquals(created.body, { version: "1" });
    assertEquals(
      (await call("POST", "/room_keys/version", {
        algorithm: ALG,
        auth_data: { public_key: "pk2" },
      })).body,
      { version: "2" },
    );

    const current = await call("GET", "/room_keys/version");
    assertEquals(current.body, {
      version: "2",
      algorithm: ALG,
      auth_data: { public_key: "pk2" },
      count: 0,
      etag: "0",
    });
    assertEquals((await call("GET", "/room_keys/version/1")).body.auth_data, {
      public_key: "pk1",
      signatures: {},
    });

    const updated = await call("PUT", "/room_keys/version/1", {
      algorithm: ALG,
      auth_data: { public_key: "pk1b" },
      version: "1",
    });
    assertEquals([updated.status, updated.body], [200, {}]);
    assertEquals((await call("GET", "/room_keys/version/1")).body.auth_data, {
      public_key: "pk1b",
    });
    const wrongAlg = await call("PUT", "/room_keys/version/1", {
      algorithm: "org.example.other",
      auth_data: {},
    });
    assertEquals([wrongAlg.status, wrongAlg.body.errcode], [400, "M_INVALID_PARAM"]);
    const wrongVersion = await call("PUT", "/room_keys/version/1", {
      algorithm: ALG,
      auth_data: { public_key: "x" },
      version: "2",
    });
    assertEquals([wrongVersion.status, wrongVersion.body.errcode], [400, "M_INVALID_PARAM"]);
    const missingAlg = await call("PUT", "/room_keys/version/1", { auth_data: {} });
    assertEquals([missingAlg.status, missingAlg.body.errcode], [400, "M_MISSING_PARAM"]);

    assertEquals((await call("DELETE", "/room_keys/version/2")).status, 200);
    assertEquals((await call("DELETE", "/room_keys/version/2")).status, 200, "deleted before");
    assertEquals((await call("GET", "/room_keys/version")).body.version, "1");
    for (const path of ["/room_keys/version/2", "/room_keys/version/7", "/room_keys/version/abc"]) {
      const res = await call("GET", path);
      assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"], path);
    }
    const neverExisted = await call("DELETE", "/room_keys/version/7");
    assertEquals([neverExisted.status, neverExisted.body.errcode], [404, "M_NOT_FOUND"]);
    assertEquals(
      (await call("POST", "/room_keys/version", {
        algorithm: ALG,
        auth_data: { public_key: "pk3" },
      })).body,
      { version: "3" },
      "numbers are not reused",
    );
  } finally {
    server.close();
  }
});

Deno.test("room_keys keys: three levels, exact counts, etags that move only with the keys", async () => {
  const { server, call } = await setup();
  try {
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "pk" } });
    assertEquals((await call("GET", "/room_keys/keys?version=1")).body, { rooms: {} });
    assertEquals((await call("GET", `/room_keys/keys/${R}?version=1`)).body, { sessions: {} });
    const noSession = await call("GET", `/room_keys/keys/${R}/s1?version=1`);
    assertEquals([noSession.status, noSession.body.errcode], [404, "M_NOT_FOUND"]);

    const one = await call("PUT", `/room_keys/keys/${R}/s1?version=1`, keyData(3, 1));
    assertEquals(one.status, 200);
    assertEquals(one.body.count, 1);
    const room = await call("PUT", `/room_keys/keys/${R}?version=1`, {
      sessions: { s2: keyData(), s3: keyData() },
    });
    assertEquals(room.body.count, 3);
    const all = await call("PUT", "/room_keys/keys?version=1", {
      rooms: { "!other:example.org": { sessions: { s4: keyData() } }, [ROOM]: { sessions: {} } },
    });
    assertEquals(all.body.count, 4);
    const info = await call("GET", "/room_keys/version/1");
    assertEquals([info.body.count, info.body.etag], [4, all.body.etag]);

    // Worse keys (higher index, more forwards, unverified over verified) change nothing.
    for (const worse of [keyData(4, 0, false, "w"), keyData(3, 2, false, "w")]) {
      const res = await call("PUT", `/room_keys/keys/${R}/s1?version=1`, worse);
      assertEquals(res.body, all.body);
    }
    assertEquals((await call("GET", `/room_keys/keys/${R}/s1?version=1`)).body, keyData(3, 1));
    const better = await call("PUT", `/room_keys/keys/${R}/s1?version=1`, keyData(3, 1, true, "v"));
    assertEquals(better.body.count, 4);
    assert(better.body.etag !== all.body.etag);
    assertEquals(
      (await call("GET", `/room_keys/keys/${R}/s1?version=1`)).body,
      keyData(3, 1, true, "v"),
    );

    const everything = await call("GET", "/room_keys/keys?version=1");
    assertEquals(Object.keys(everything.body.rooms).sort(), ["!other:example.org", ROOM]);
    assertEquals(Object.keys(everything.body.rooms[ROOM].sessions).sort(), ["s1", "s2", "s3"]);
    assertEquals(
      Object.keys((await call("GET", `/room_keys/keys/${R}?version=1`)).body.sessions).length,
      3,
    );

    const delSession = await call("DELETE", `/room_keys/keys/${R}/s2?version=1`);
    assertEquals(delSession.body.count, 3);
    const delMissing = await call("DELETE", `/room_keys/keys/${R}/s2?version=1`);
    assertEquals(delMissing.body, delSession.body, "deleting nothing keeps the etag");
    assertEquals((await call("DELETE", `/room_keys/keys/${R}?version=1`)).body.count, 1);
    const delAll = await call("DELETE", "/room_keys/keys?version=1");
    assertEquals(delAll.body.count, 0);
    assertEquals((await call("GET", "/room_keys/keys?version=1")).body, { rooms: {} });
    assertEquals((await call("GET", "/room_keys/version")).body.count, 0);
  } finally {
    server.close();
  }
});

Deno.test("room_keys errors: stale version, missing or unknown version, bad bodies", async () => {
  const { server, call } = await setup();
  try {
    const noBackup = await call("PUT", `/room_keys/keys/${R}/s?version=1`, keyData());
    assertEquals([noBackup.status, noBackup.body.errcode], [404, "M_NOT_FOUND"]);
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "a" } });
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "b" } });
    for (
      const [method, path, body] of [
        ["PUT", `/room_keys/keys/${R}/s?version=1`, keyData()],
        ["PUT", `/room_keys/keys/${R}?version=1`, { sessions: { s: keyData() } }],
        ["PUT", "/room_keys/keys?version=1", { rooms: { [ROOM]: { sessions: { s: keyData() } } } }],
      ] as const
    ) {
      const res = await call(method, path, body);
      assertEquals(res.status, 403, path);
      assertEquals(res.body.errcode, "M_WRONG_ROOM_KEYS_VERSION");
      assertEquals(res.body.current_version, "2");
    }
    assertEquals((await call("GET", "/room_keys/keys?version=1")).body, { rooms: {} });

    for (const path of ["/room_keys/keys", `/room_keys/keys/${R}`, `/room_keys/keys/${R}/s`]) {
      for (const method of ["GET", "DELETE", "PUT"]) {
        const res = await call(method, path, method === "PUT" ? keyData() : undefined);
        assertEquals([res.status, res.body.errcode], [400, "M_MISSING_PARAM"], `${method} ${path}`);
      }
      for (const version of ["9", "abc", "", "01"]) {
        const res = await call("GET", `${path}?version=${version}`);
        assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"], `${path} ${version}`);
      }
    }
    const badRoom = await call("PUT", "/room_keys/keys?version=2", {
      rooms: { "not-a-room": { sessions: { s: keyData() } } },
    });
    assertEquals(badRoom.status, 400);
    const badKey = await call("PUT", `/room_keys/keys/${R}?version=2`, {
      sessions: { s: { ...keyData(), first_message_index: "0" } },
    });
    assertEquals([badKey.status, badKey.body.errcode], [400, "M_BAD_JSON"]);
    const missingField = await call("PUT", `/room_keys/keys/${R}/s?version=2`, {
      first_message_index: 0,
      forwarded_count: 0,
      session_data: {},
    });
    assertEquals([missingField.status, missingField.body.errcode], [400, "M_MISSING_PARAM"]);
    const noPublicKey = await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: {} });
    assertEquals(noPublicKey.status, 400);
    assertEquals((await call("GET", "/room_keys/version")).body.count, 0, "nothing was written");
  } finally {
    server.close();
  }
});

Deno.test("room_keys: a 2,500-session upload lands whole with an exact count", async () => {
  const { server, call } = await setup();
  try {
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "pk" } });
    const rooms: Record<string, { sessions: Record<string, unknown> }> = {};
    for (let i = 0; i < 2500; i++) {
      const roomId = `!room${i % 50}:example.org`;
      rooms[roomId] ??= { sessions: {} };
      rooms[roomId].sessions[`session${i}`] = keyData(i % 7);
    }
    const put = await call("PUT", "/room_keys/keys?version=1", { rooms });
    assertEquals(put.status, 200);
    assertEquals(put.body.count, 2500);
    const all = await call("GET", "/room_keys/keys?version=1");
    const sessions = Object.values(all.body.rooms as Record<string, { sessions: object }>)
      .reduce((n, room) => n + Object.keys(room.sessions).length, 0);
    assertEquals(sessions, 2500);
    assertEquals(all.body.rooms["!room3:example.org"].sessions.session53, keyData(53 % 7));
    assertEquals((await call("GET", "/room_keys/version")).body.count, 2500);
  } finally {
    server.close();
  }
});

Deno.test("room_keys: concurrent uploads to one version keep the count exact", async () => {
  const { server, call } = await setup();
  try {
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "pk" } });
    const uploads = Array.from({ length: 8 }, (_, w) => {
      const sessions: Record<string, unknown> = {};
      for (let i = 0; i < 100; i++) sessions[i < 60 ? `shared${i}` : `w${w}-${i}`] = keyData(w);
      return call("PUT", `/room_keys/keys/${R}?version=1`, { sessions });
    });
    for (const res of await Promise.all(uploads)) assertEquals(res.status, 200);
    const stored = Object.keys((await call("GET", `/room_keys/keys/${R}?version=1`)).body.sessions);
    assertEquals(stored.length, 60 + 8 * 40);
    assertEquals((await call("GET", "/room_keys/version/1")).body.count, stored.length);
    const shared = await call("GET", `/room_keys/keys/${R}/shared7?version=1`);
    assertEquals(shared.body.first_message_index, 0, "the lowest index won");
  } finally {
    server.close();
  }
});

Deno.test("room_keys: r0 works the same, and backups are per user", async () => {
  const { server, alice, call } = await setup();
  try {
    const bob = await registerUser(server, "bob");
    const r0 = await server.request("POST", "/_matrix/client/r0/room_keys/version", {
      token: alice.accessToken,
      body: { algorithm: ALG, auth_data: { public_key: "pk" } },
    });
    assertEquals(r0.body, { version: "1" });
    await call("PUT", `/room_keys/keys/${R}/s?version=1`, keyData());
    const bobs = await server.request("GET", `${V3}/room_keys/keys?version=1`, {
      token: bob.accessToken,
    });
    assertEquals([bobs.status, bobs.body.errcode], [404, "M_NOT_FOUND"]);
    const unauthenticated = await server.request("GET", `${V3}/room_keys/version`);
    assertEquals(unauthenticated.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("room_keys: session_data and other algorithms' auth_data are opaque JSON", async () => {
  const { server, call } = await setup();
  try {
    // Any JSON value for an algorithm the server does not know, as Synapse stores it.
    const created = await call("POST", "/room_keys/version", {
      algorithm: "org.example.backup",
      auth_data: "anopaquestring",
    });
    assertEquals([created.status, created.body], [200, { version: "1" }]);
    const updated = await call("PUT", "/room_keys/version/1", {
      algorithm: "org.example.backup",
      auth_data: ["another", "opaque", "value"],
      version: "1",
    });
    assertEquals(updated.status, 200);
    const read = await call("GET", "/room_keys/version/1");
    assertEquals(read.body.auth_data, ["another", "opaque", "value"]);
    const missing = await call("POST", "/room_keys/version", { algorithm: "org.example.backup" });
    assertEquals([missing.status, missing.body.errcode], [400, "M_MISSING_PARAM"]);
    for (const authData of ["pk", { public_key: 1 }, null]) {
      const refused = await call("POST", "/room_keys/version", {
        algorithm: ALG,
        auth_data: authData,
      });
      assertEquals([refused.status, refused.body.errcode], [400, "M_BAD_JSON"], String(authData));
    }
    assertEquals(
      (await call("GET", "/room_keys/version")).body.version,
      "1",
      "nothing was written",
    );

    // session_data is as opaque: stored and returned as sent, but required.
    const opaque = { ...keyData(), session_data: "anopaquestring" };
    const put = await call("PUT", `/room_keys/keys/${R}/s1?version=1`, opaque);
    assertEquals(put.status, 200, JSON.stringify(put.body));
    assertEquals((await call("GET", `/room_keys/keys/${R}/s1?version=1`)).body, opaque);
    const { session_data: _dropped, ...noData } = keyData();
    const missingData = await call("PUT", `/room_keys/keys/${R}/s2?version=1`, noData);
    assertEquals([missingData.status, missingData.body.errcode], [400, "M_MISSING_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("room_keys: room IDs are stored as clients name them, sigil and length checked", async () => {
  const { server, call } = await setup();
  try {
    await call("POST", "/room_keys/version", { algorithm: ALG, auth_data: { public_key: "a" } });
    // A room ID without a server part (as SyTest and old clients send) is a key like any other.
    const put = await call("PUT", "/room_keys/keys/!abcd/s1?version=1", keyData());
    assertEquals(put.status, 200, JSON.stringify(put.body));
    const read = await call("GET", "/room_keys/keys?version=1");
    assertEquals(Object.keys(read.body.rooms), ["!abcd"]);
    const missing = await call("GET", "/room_keys/keys/!notaroom/nosession?version=1");
    assertEquals([missing.status, missing.body.errcode], [404, "M_NOT_FOUND"]);
    for (const room of ["not-a-room", "!", encodeURIComponent(`!${"r".repeat(255)}`)]) {
      const bad = await call("PUT", `/room_keys/keys/${room}/s?version=1`, keyData());
      assertEquals([bad.status, bad.body.errcode], [400, "M_INVALID_PARAM"], room);
    }
  } finally {
    server.close();
  }
});

Deno.test("room_keys: deactivating the account deletes every backup version and its keys", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const dora = await registerUser(server, "dora", "pw-dora");
    const call = (method: string, path: string, body?: unknown) =>
      server.request(method, `${V3}${path}`, { token: dora.accessToken, body });
    for (const tag of ["a", "b"]) {
      const created = await call("POST", "/room_keys/version", {
        algorithm: ALG,
        auth_data: { public_key: `pk-${tag}` },
      });
      const put = await call(
        "PUT",
        `/room_keys/keys/${R}/s-${tag}?version=${created.body.version}`,
        {
          ...keyData(0, 0, false, tag),
        },
      );
      assertEquals(put.body.count, 1);
    }
    const backupEntries = async () => {
      let n = 0;
      for (
        const prefix of [
          e2eeKeys.backupVersionPrefix(dora.userId),
          e2eeKeys.backupKeyPrefix(dora.userId),
        ]
      ) {
        for await (const _ of server.kv.list({ prefix })) n++;
      }
      return n;
    };
    assert(await backupEntries() >= 4, "two versions with a key each are stored");
    const challenge = await call("POST", "/account/deactivate", {});
    const done = await call("POST", "/account/deactivate", {
      auth: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "dora" },
        password: "pw-dora",
        session: challenge.body.session,
      },
    });
    assertEquals(done.status, 200);
    assertEquals(await backupEntries(), 0);
  } finally {
    server.close();
  }
});
