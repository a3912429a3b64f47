/**
 * Sessions across two servers on one KV: a token revoked through B (logout, logout of all
 * devices, device deletion, password change with logout_devices, deactivation) answers 401 on A
 * on the very next request, though A served that token a moment before.
 */
import { assertEquals } from "../assert.ts";
import { KvAccountStore } from "../../kv/account_store.ts";
import { loginUser, passwordAuth, registerUser } from "../routes/client_harness.ts";
import { type SharedKvServer, startSharedKvServers, V3 } from "./shared_kv_servers.ts";

function whoami(server: SharedKvServer, token: string) {
  return server.request("GET", `${V3}/account/whoami`, { token });
}

async function loginStatus(server: SharedKvServer, user: string, password: string) {
  const res = await server.request("POST", `${V3}/login`, {
    body: passwordAuth(user, password),
  });
  return res.status;
}

Deno.test("coherence: a logout through B ends the token on A at once", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice", "pw-alice");
    const second = await loginUser(a, "alice", "pw-alice");
    assertEquals((await whoami(a, alice.accessToken)).status, 200);
    assertEquals((await whoami(a, second.accessToken)).status, 200);

    assertEquals(
      (await b.request("POST", `${V3}/logout`, { token: alice.accessToken })).status,
      200,
    );
    const after = await whoami(a, alice.accessToken);
    assertEquals(after.status, 401);
    assertEquals(after.body.errcode, "M_UNKNOWN_TOKEN");
    // The other device is untouched, and A still serves it.
    assertEquals((await whoami(a, second.accessToken)).body.user_id, alice.userId);

    const third = await loginUser(a, "alice", "pw-alice");
    assertEquals((await whoami(a, third.accessToken)).status, 200);
    const all = await b.request("POST", `${V3}/logout/all`, { token: second.accessToken });
    assertEquals(all.status, 200);
    assertEquals((await whoami(a, second.accessToken)).status, 401);
    assertEquals((await whoami(a, third.accessToken)).status, 401);
  } finally {
    close();
  }
});

Deno.test("coherence: a device deleted through B (UIA begun on A) stops working on A", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const bob = await registerUser(a, "bob", "pw-bob");
    const phone = await loginUser(a, "bob", "pw-bob", "PHONE");
    assertEquals((await whoami(a, phone.accessToken)).status, 200);

    // The UIA session lives in KV: begun on A, completed on B.
    const challenge = await a.request("DELETE", `${V3}/devices/PHONE`, { token: bob.accessToken });
    assertEquals(challenge.status, 401);
    const deleted = await b.request("DELETE", `${V3}/devices/PHONE`, {
      token: bob.accessToken,
      body: { auth: passwordAuth("bob", "pw-bob", challenge.body.session) },
    });
    assertEquals(deleted.status, 200);
    assertEquals((await whoami(a, phone.accessToken)).status, 401);
    const devices = await a.request("GET", `${V3}/devices`, { token: bob.accessToken });
    assertEquals(devices.body.devices.map((d: { device_id: string }) => d.device_id), [
      bob.deviceId,
    ]);
  } finally {
    close();
  }
});

Deno.test("coherence: a password change through B logs A's other devices out", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const carol = await registerUser(a, "carol", "pw-old");
    const laptop = await loginUser(a, "carol", "pw-old");
    assertEquals((await whoami(a, laptop.accessToken)).status, 200);
    const challenge = await b.request("POST", `${V3}/account/password`, {
      token: carol.accessToken,
      body: { new_password: "pw-new" },
    });
    assertEquals(challenge.status, 401);
    const changed = await b.request("POST", `${V3}/account/password`, {
      token: carol.accessToken,
      body: {
        new_password: "pw-new",
        logout_devices: true,
        auth: passwordAuth("carol", "pw-old", challenge.body.session),
      },
    });
    assertEquals(changed.status, 200);
    assertEquals((await whoami(a, laptop.accessToken)).status, 401);
    // The device that changed the password stays logged in, on both servers.
    assertEquals((await whoami(a, carol.accessToken)).status, 200);
    assertEquals(await loginStatus(a, "carol", "pw-old"), 403);
    assertEquals(await loginStatus(a, "carol", "pw-new"), 200);
  } finally {
    close();
  }
});

Deno.test("coherence: an account deactivated through B is gone on A at once", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const dave = await registerUser(a, "dave", "pw-dave");
    const other = await loginUser(a, "dave", "pw-dave");
    assertEquals((await whoami(a, dave.accessToken)).status, 200);
    const challenge = await b.request("POST", `${V3}/account/deactivate`, {
      token: dave.accessToken,
      body: {},
    });
    const done = await b.request("POST", `${V3}/account/deactivate`, {
      token: dave.accessToken,
      body: { auth: passwordAuth("dave", "pw-dave", challenge.body.session) },
    });
    assertEquals(done.status, 200);
    assertEquals((await whoami(a, dave.accessToken)).status, 401);
    assertEquals((await whoami(a, other.accessToken)).status, 401);
    assertEquals(await loginStatus(a, "dave", "pw-dave"), 403);
  } finally {
    close();
  }
});

Deno.test("coherence: a deactivation whose process died before its logout still ends every token", async () => {
  const { a, kv, close } = await startSharedKvServers();
  try {
    const erin = await registerUser(a, "erin", "pw-erin");
    const other = await loginUser(a, "erin", "pw-erin");
    assertEquals((await whoami(a, erin.accessToken)).status, 200);
    // What B's deactivation commits before anything else; B then dies (no logout, no hooks).
    const store = new KvAccountStore(kv);
    const account = (await store.getAccount(erin.userId))!;
    await store.markDeactivated({ ...account, passwordHash: undefined, deactivated: true });
    assertEquals((await whoami(a, erin.accessToken)).status, 401);
    assertEquals((await whoami(a, other.accessToken)).status, 401);
    // The rest of the work is left for later: the devices go with their hooks.
    assertEquals(await store.pendingDeactivations(), [erin.userId]);
    assertEquals((await store.listDevices(erin.userId)).length, 2);
    // A login attempt is refused, and finishes that work on the way.
    assertEquals(await loginStatus(a, "erin", "pw-erin"), 403);
    assertEquals(await store.pendingDeactivations(), []);
    assertEquals(await store.listDevices(erin.userId), []);
  } finally {
    close();
  }
});
