/**
 * Every E2EE change a long-polling /sync must hear about wakes it: cross-signing keys uploaded by
 * a room-mate, a user-signing signature (heard by the signer's own other devices only), and a
 * room-mate's device deleted. Each change is made only once the sync is waiting, and the
 * assertion is on the content, so a missed wake-up fails instead of passing at the timeout.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  newCrossSigning,
  newDeviceKeys,
  type TestCrossSigning,
} from "../domain/e2ee/cross_signing_fixtures.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function call(
  server: Server,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await server.request(method, V3 + path, { token: user.accessToken, body });
  assertEquals(res.status, 200, `${method} ${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

async function uploadCrossSigning(server: Server, user: RegisteredUser, cross: TestCrossSigning) {
  await call(server, user, "POST", "/keys/device_signing/upload", {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  });
}

/**
 * Start a long-poll of `user` from `since`, wait until it is watching, run `change`, and return
 * what the sync answered.
 */
async function wokenBy(
  server: Server,
  user: RegisteredUser,
  since: string,
  change: () => Promise<unknown>,
) {
  const watching = server.deps.syncNotifier.watching;
  let answered = false;
  const polling = server.request(
    "GET",
    `${V3}/sync?timeout=20000&set_presence=offline&since=${since}`,
    { token: user.accessToken },
  ).finally(() => answered = true);
  while (server.deps.syncNotifier.watching === watching) {
    if (answered) {
      throw new Error(`the sync answered before the change: ${JSON.stringify(await polling)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await change();
  const res = await polling;
  assertEquals(res.status, 200);
  assert(res.body.next_batch > since);
  return res.body;
}

/** A sync token after which nothing is pending for `user` (their own joins etc. are read). */
async function settled(server: Server, user: RegisteredUser): Promise<string> {
  const first = await call(server, user, "GET", "/sync?timeout=0&set_presence=offline");
  const next = await call(
    server,
    user,
    "GET",
    `/sync?timeout=0&set_presence=offline&since=${first.next_batch}`,
  );
  return next.next_batch;
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  const alice = await registerUser(server, "alice", "correct horse");
  const bob = await registerUser(server, "bob");
  const room = await call(server, alice, "POST", "/createRoom", { preset: "public_chat" });
  await call(server, bob, "POST", `/join/${encodeURIComponent(room.room_id)}`, {});
  return { server, alice, bob };
}

Deno.test("a room-mate's new cross-signing keys wake a long-polling sync", async () => {
  const { server, alice, bob } = await setup();
  try {
    const since = await settled(server, bob);
    const cross = await newCrossSigning(alice.userId);
    const body = await wokenBy(server, bob, since, () => uploadCrossSigning(server, alice, cross));
    assertEquals(body.device_lists.changed, [alice.userId]);
  } finally {
    server.close();
  }
});

Deno.test("a user-signing signature wakes the signer's other device, and only it", async () => {
  const { server, alice, bob } = await setup();
  try {
    const aliceCross = await newCrossSigning(alice.userId);
    const bobCross = await newCrossSigning(bob.userId);
    await uploadCrossSigning(server, alice, aliceCross);
    await uploadCrossSigning(server, bob, bobCross);
    // alice's second device, whose long-poll must hear that alice verified bob.
    const login = await call(server, alice, "POST", "/login", {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: "alice" },
      password: "correct horse",
    });
    const aliceTwo: RegisteredUser = {
      userId: alice.userId,
      accessToken: login.access_token,
      deviceId: login.device_id,
    };
    const since = await settled(server, aliceTwo);
    const bobSince = await settled(server, bob);
    const signed = await aliceCross.userSigning.sign(bobCross.upload.master, alice.userId);
    const body = await wokenBy(
      server,
      aliceTwo,
      since,
      () =>
        call(server, alice, "POST", "/keys/signatures/upload", {
          [bob.userId]: { [bobCross.master.publicKey]: signed },
        }),
    );
    assertEquals(body.device_lists.changed, [bob.userId]);
    // bob's device list did not change for anyone else: his sync hears nothing of it.
    const bobs = await call(server, bob, "GET", `/sync?timeout=0&since=${bobSince}`);
    assertEquals(bobs.device_lists.changed, []);
  } finally {
    server.close();
  }
});

Deno.test("a room-mate's deleted device wakes a long-polling sync", async () => {
  const { server, alice, bob } = await setup();
  try {
    const device = await newDeviceKeys(alice.userId, alice.deviceId);
    await call(server, alice, "POST", "/keys/upload", { device_keys: device.keys });
    const since = await settled(server, bob);
    const body = await wokenBy(
      server,
      bob,
      since,
      () => call(server, alice, "POST", "/logout", {}),
    );
    assertEquals(body.device_lists.changed, [alice.userId]);
    const query = await call(server, bob, "POST", "/keys/query", {
      device_keys: { [alice.userId]: [] },
    });
    assertEquals(query.device_keys[alice.userId], {});
  } finally {
    server.close();
  }
});
