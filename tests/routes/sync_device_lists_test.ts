/**
 * Device-list changes without keys: a new login, a deletion and a rename appear in
 * `device_lists.changed` of the user's own syncs and of those sharing a room (as Synapse does;
 * SyTest 41end-to-end-keys/06-device-lists.pl).
 */
import { assertEquals } from "../assert.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function sync(server: Server, user: { accessToken: string }, since?: string) {
  const query = since === undefined ? "" : `?since=${since}`;
  const res = await server.request("GET", `/_matrix/client/v3/sync${query}`, {
    token: user.accessToken,
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function login(server: Server, user: RegisteredUser, password: string) {
  const res = await server.request("POST", "/_matrix/client/v3/login", {
    body: {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: user.userId },
      password,
    },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return { accessToken: res.body.access_token as string, deviceId: res.body.device_id as string };
}

Deno.test("a new login, a rename and a deletion of keyless devices are device-list changes", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob", "bob's password");
    const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = created.body.room_id;
    const joined = await server.request("POST", `/_matrix/client/v3/join/${roomId}`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const alice1 = await sync(server, alice);
    const bob1 = await sync(server, bob);

    // Bob logs in on a second device: Alice and Bob himself hear of it.
    const second = await login(server, bob, "bob's password");
    const alice2 = await sync(server, alice, alice1.next_batch);
    assertEquals(alice2.device_lists.changed, [bob.userId]);
    const bob2 = await sync(server, bob, bob1.next_batch);
    assertEquals(bob2.device_lists.changed, [bob.userId]);

    // A rename of that keyless device.
    const renamed = await server.request("PUT", `/_matrix/client/v3/devices/${second.deviceId}`, {
      token: bob.accessToken,
      body: { display_name: "phone" },
    });
    assertEquals(renamed.status, 200);
    const alice3 = await sync(server, alice, alice2.next_batch);
    assertEquals(alice3.device_lists.changed, [bob.userId]);

    // Its deletion.
    const deleted = await server.request("POST", "/_matrix/client/v3/delete_devices", {
      token: bob.accessToken,
      body: {
        devices: [second.deviceId],
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: bob.userId },
          password: "bob's password",
        },
      },
    });
    assertEquals(deleted.status, 200, JSON.stringify(deleted.body));
    const alice4 = await sync(server, alice, alice3.next_batch);
    assertEquals(alice4.device_lists.changed, [bob.userId]);

    // Logging in again with a known device ID adds no device: nothing to announce.
    await server.request("POST", "/_matrix/client/v3/login", {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: bob.userId },
        password: "bob's password",
        device_id: bob.deviceId,
      },
    });
    const alice5 = await sync(server, alice, alice4.next_batch);
    assertEquals(alice5.device_lists.changed, []);
  } finally {
    await server.close();
  }
});
