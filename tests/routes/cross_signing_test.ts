/**
 * Cross-signing over HTTP: /keys/device_signing/upload behind UIA only after the first upload,
 * /keys/signatures/upload with per-key failures, /keys/query showing each signature to the
 * right viewer (v3 and r0), and the signature notice reaching only the signer's incremental sync.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import {
  crossSigningKey,
  newCrossSigning,
  newDeviceKeys,
  newKeyPair,
  type TestCrossSigning,
} from "../domain/e2ee/cross_signing_fixtures.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** Register a user whose device has uploaded keys and who has cross-signing keys. */
async function cryptoUser(server: Server, name: string, password?: string) {
  const user = await registerUser(server, name, password);
  const device = await newDeviceKeys(user.userId, user.deviceId);
  const uploaded = await server.request("POST", `${V3}/keys/upload`, {
    token: user.accessToken,
    body: { device_keys: device.keys },
  });
  assertEquals(uploaded.status, 200, JSON.stringify(uploaded.body));
  const cross = await newCrossSigning(user.userId);
  return { user, device, cross };
}

function uploadSigning(
  server: Server,
  user: RegisteredUser,
  cross: TestCrossSigning,
  auth?: unknown,
) {
  return server.request("POST", `${V3}/keys/device_signing/upload`, {
    token: user.accessToken,
    body: {
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
      user_signing_key: cross.upload.user_signing,
      ...(auth === undefined ? {} : { auth }),
    },
  });
}

Deno.test("device_signing/upload: no UIA the first time or for a retry, UIA to replace", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const { user } = await cryptoUser(server, "alice", "correct horse");
    const first = await newCrossSigning(user.userId);
    assertEquals((await uploadSigning(server, user, first)).status, 200);
    // The response was lost: the same upload again goes through without auth.
    const retry = await uploadSigning(server, user, first);
    assertEquals([retry.status, retry.body], [200, {}]);

    const second = await newCrossSigning(user.userId);
    const challenge = await uploadSigning(server, user, second);
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.login.password"] }]);
    assert(typeof challenge.body.session === "string");
    const password = (pw: string) => ({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: user.userId },
      password: pw,
      session: challenge.body.session,
    });
    const wrong = await uploadSigning(server, user, second, password("wrong"));
    assertEquals([wrong.status, wrong.body.errcode], [401, "M_FORBIDDEN"]);
    let query = await server.request("POST", `${V3}/keys/query`, {
      token: user.accessToken,
      body: { device_keys: { [user.userId]: [] } },
    });
    assertEquals(query.body.master_keys[user.userId], first.upload.master);

    const ok = await uploadSigning(server, user, second, password("correct horse"));
    assertEquals([ok.status, ok.body], [200, {}]);
    query = await server.request("POST", `/_matrix/client/r0/keys/query`, {
      token: user.accessToken,
      body: { device_keys: { [user.userId]: [] }, timeout: 5000 },
    });
    assertEquals(query.status, 200);
    assertEquals(query.body.master_keys[user.userId], second.upload.master);
    assertEquals(query.body.self_signing_keys[user.userId], second.upload.self_signing);
    assertEquals(query.body.user_signing_keys[user.userId], second.upload.user_signing);

    // A self-signing key not signed by the master key.
    const stranger = await newKeyPair();
    const bad = await server.request("POST", `${V3}/keys/device_signing/upload`, {
      token: user.accessToken,
      body: {
        self_signing_key: await stranger.sign(
          { ...second.upload.self_signing, signatures: undefined },
          user.userId,
          `ed25519:${second.master.publicKey}`,
        ),
      },
    });
    assertEquals([bad.status, bad.body.errcode], [400, "M_INVALID_SIGNATURE"]);
  } finally {
    server.close();
  }
});

Deno.test("signatures: per-key failures, per-viewer queries, notice in the signer's sync only", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await cryptoUser(server, "alice");
    const bob = await cryptoUser(server, "bob");
    for (const u of [alice, bob]) {
      assertEquals((await uploadSigning(server, u.user, u.cross)).status, 200);
    }
    const sync = (u: RegisteredUser, since?: string) =>
      server.request("GET", `${V3}/sync?timeout=0${since ? `&since=${since}` : ""}`, {
        token: u.accessToken,
      });
    const aliceSince = (await sync(alice.user)).body.next_batch;
    const bobSince = (await sync(bob.user)).body.next_batch;

    const a = alice.user.userId;
    const b = bob.user.userId;
    const stranger = await newKeyPair();
    const signed = await server.request("POST", `${V3}/keys/signatures/upload`, {
      token: alice.user.accessToken,
      body: {
        [a]: {
          [alice.user.deviceId]: await alice.cross.selfSigning.sign(alice.device.keys, a),
          NOSUCHDEVICE: await alice.cross.selfSigning.sign(alice.device.keys, a),
        },
        [b]: {
          [bob.cross.master.publicKey]: await alice.cross.userSigning.sign(
            bob.cross.upload.master,
            a,
          ),
          [bob.user.deviceId]: await stranger.sign(bob.device.keys, a),
        },
      },
    });
    assertEquals(signed.status, 200);
    assertEquals(
      Object.entries(signed.body.failures).map(([u, byKey]) => [
        u,
        Object.entries(byKey as Record<string, JsonObject>).map(([k, f]) => [k, f.errcode]),
      ]),
      [
        [a, [["NOSUCHDEVICE", "M_NOT_FOUND"]]],
        [b, [[bob.user.deviceId, "M_NOT_FOUND"]]],
      ],
    );

    const query = (u: RegisteredUser) =>
      server.request("POST", `${V3}/keys/query`, {
        token: u.accessToken,
        body: { device_keys: { [a]: [], [b]: [] } },
      });
    const aliceView = (await query(alice.user)).body;
    const bobView = (await query(bob.user)).body;
    const usk = `ed25519:${alice.cross.userSigning.publicKey}`;
    assertEquals(aliceView.master_keys[b].signatures?.[a]?.[usk] !== undefined, true);
    assertEquals(bobView.master_keys[b].signatures?.[a], undefined);
    const ssk = `ed25519:${alice.cross.selfSigning.publicKey}`;
    for (const view of [aliceView, bobView]) {
      const device = view.device_keys[a][alice.user.deviceId];
      assert(typeof device.signatures[a][ssk] === "string");
      assertEquals(device.keys, alice.device.keys.keys);
    }
    assertEquals(Object.keys(aliceView.user_signing_keys), [a]);
    assertEquals(Object.keys(bobView.user_signing_keys), [b]);

    // Alice's sync lists Bob, whose keys she signed (her own device's new signature is the
    // device-list stream's to report); Bob shares no room with Alice and his list did not change.
    const aliceNext = await sync(alice.user, aliceSince);
    assert(aliceNext.body.device_lists.changed.includes(b));
    const bobNext = await sync(bob.user, bobSince);
    assertEquals(bobNext.body.device_lists.changed, []);
    // The notice belongs to one window only.
    const aliceAfter = await sync(alice.user, aliceNext.body.next_batch);
    assertEquals(aliceAfter.body.device_lists.changed, []);
  } finally {
    server.close();
  }
});

Deno.test("odd but parseable bodies get a Matrix 4xx or a per-key failure, never a 500", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await cryptoUser(server, "alice");
    const token = alice.user.accessToken;
    const a = alice.user.userId;
    assertEquals((await uploadSigning(server, alice.user, alice.cross)).status, 200);
    const master = alice.cross.upload.master;
    const cases: [path: string, body: unknown, status: number, errcode?: string][] = [
      ["/keys/device_signing/upload", { master_key: { ...master, extra: 1.5 } }, 400, "M_BAD_JSON"],
      ["/keys/device_signing/upload", { master_key: { ...master, keys: { "ed25519:x": 5 } } }, 400],
      ["/keys/device_signing/upload", { master_key: [] }, 400, "M_BAD_JSON"],
      ["/keys/device_signing/upload", { master_key: { ...master, user_id: 7 } }, 400],
      ["/keys/device_signing/upload", {}, 200],
      ["/keys/signatures/upload", { [a]: [] }, 400, "M_BAD_JSON"],
      ["/keys/query", { device_keys: { [a]: "all" } }, 400, "M_BAD_JSON"],
      ["/keys/query", { device_keys: { [a]: [] }, timeout: "soon" }, 400, "M_BAD_JSON"],
      ["/keys/query", {}, 400, "M_MISSING_PARAM"],
      ["/keys/query", { device_keys: { "not a user": [], [a]: [] } }, 400, "M_BAD_JSON"],
      ["/keys/query", { device_keys: { [a]: ["x".repeat(5000)] } }, 400, "M_BAD_JSON"],
      ["/keys/query", { device_keys: { [a]: [] }, timeout: -5 }, 200],
    ];
    for (const [path, body, status, errcode] of cases) {
      const res = await server.request("POST", V3 + path, { token, body });
      assertEquals([path, res.status], [path, status], JSON.stringify(res.body));
      if (errcode) assertEquals(res.body.errcode, errcode);
    }
    const odd = await server.request("POST", `${V3}/keys/signatures/upload`, {
      token,
      body: {
        [a]: { NUMBER: 5, [alice.cross.master.publicKey]: { ...master, extra: 1.5 } },
        "not a user": { K: {} },
      },
    });
    assertEquals(odd.status, 200);
    assertEquals(odd.body.failures[a].NUMBER.errcode, "M_BAD_JSON");
    assertEquals(odd.body.failures[a][alice.cross.master.publicKey].errcode, "M_BAD_JSON");
    assertEquals(odd.body.failures["not a user"].K.errcode, "M_INVALID_PARAM");
  } finally {
    server.close();
  }
});

Deno.test("a new user-signing key alone reaches only its owner's device lists", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const { user: alice, cross } = await cryptoUser(server, "alice", "pw");
    const { user: bob } = await cryptoUser(server, "bob");
    const room = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    await server.request("POST", `${V3}/join/${encodeURIComponent(room.body.room_id)}`, {
      token: bob.accessToken,
      body: {},
    });
    const upload = (body: JsonObject) =>
      server.request("POST", `${V3}/keys/device_signing/upload`, {
        token: alice.accessToken,
        body,
      });
    const first = await upload({
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
    });
    assertEquals(first.status, 200);
    const sync = (u: RegisteredUser, since?: string) =>
      server.request("GET", `${V3}/sync?timeout=0${since ? `&since=${since}` : ""}`, {
        token: u.accessToken,
      });
    const aliceSince = (await sync(alice)).body.next_batch;
    const bobSince = (await sync(bob)).body.next_batch;

    const added = await upload({
      user_signing_key: cross.upload.user_signing,
      auth: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: alice.userId },
        password: "pw",
      },
    });
    assertEquals(added.status, 200, JSON.stringify(added.body));
    assertEquals((await sync(bob, bobSince)).body.device_lists.changed, []);
    assertEquals((await sync(alice, aliceSince)).body.device_lists.changed, [alice.userId]);

    // A new self-signing key is everyone's business again.
    const next = await newCrossSigning(alice.userId);
    const bobAgain = (await sync(bob)).body.next_batch;
    const replaced = await upload({
      self_signing_key: await cross.master.sign(
        crossSigningKey(alice.userId, "self_signing", next.selfSigning),
        alice.userId,
      ),
      auth: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: alice.userId },
        password: "pw",
      },
    });
    assertEquals(replaced.status, 200, JSON.stringify(replaced.body));
    assertEquals((await sync(bob, bobAgain)).body.device_lists.changed, [alice.userId]);
  } finally {
    server.close();
  }
});
