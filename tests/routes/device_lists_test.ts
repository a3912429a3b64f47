/**
 * Device-list tracking over HTTP: `device_lists` in incremental /sync and GET /keys/changes,
 * and the wake-up of a long-polling sync when a room-mate's keys change.
 */
import { assert, assertEquals } from "../assert.ts";
import { type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { member, publicRoom } from "./sender_rooms.ts";
import { commitWithDeviceListChanges } from "../../kv/device_list_log.ts";
import { newTestDevice } from "../domain/e2ee/device_keys_fixture.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/**
 * What an upload of new device keys does: the device-list update in its own commit, then the
 * notifier's wake-ups of the user's and their room-mates' syncs.
 */
async function keysChanged(server: Server, user: RegisteredUser): Promise<void> {
  const commit = await commitWithDeviceListChanges(server.kv, (_op, changes) => {
    changes.add(user.userId, { deviceIds: [user.deviceId] });
    return Promise.resolve(true);
  });
  await server.deps.deviceListNotifier.changed([user.userId], commit!.versionstamp);
}

async function sync(server: Server, user: RegisteredUser, since?: string, timeout = 0) {
  const query = since === undefined ? "" : `?since=${since}&timeout=${timeout}`;
  const res = await server.request("GET", `/_matrix/client/v3/sync${query}`, {
    token: user.accessToken,
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function keyChanges(server: Server, user: RegisteredUser, from: string, to: string) {
  return await server.request(
    "GET",
    `/_matrix/client/v3/keys/changes?from=${from}&to=${to}`,
    { token: user.accessToken },
  );
}

Deno.test("a room-mate's new keys show in the next sync and /keys/changes, not a stranger's", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    await publicRoom(server, carol.userId);
    const initialBob = await sync(server, bob);
    const initialCarol = await sync(server, carol);
    // A full sync says nothing about device lists.
    assertEquals(initialBob.device_lists, { changed: [], left: [] });

    await keysChanged(server, alice);
    const bobNext = await sync(server, bob, initialBob.next_batch);
    assertEquals(bobNext.device_lists, { changed: [alice.userId], left: [] });
    const carolNext = await sync(server, carol, initialCarol.next_batch);
    assertEquals(carolNext.device_lists, { changed: [], left: [] });

    const bobChanges = await keyChanges(server, bob, initialBob.next_batch, bobNext.next_batch);
    assertEquals(bobChanges.status, 200);
    assertEquals(bobChanges.body, { changed: [alice.userId], left: [] });
    const carolChanges = await keyChanges(
      server,
      carol,
      initialCarol.next_batch,
      carolNext.next_batch,
    );
    assertEquals(carolChanges.body, { changed: [], left: [] });
    // r0 serves the same endpoint.
    const r0 = await server.request(
      "GET",
      `/_matrix/client/r0/keys/changes?from=${initialBob.next_batch}&to=${bobNext.next_batch}`,
      { token: bob.accessToken },
    );
    assertEquals(r0.body, { changed: [alice.userId], left: [] });
    // The change is in the window it landed in, not in the next one.
    const bobAfter = await sync(server, bob, bobNext.next_batch);
    assertEquals(bobAfter.device_lists, { changed: [], left: [] });
  } finally {
    server.close();
  }
});

Deno.test("joins make users changed, leaves make them left, in sync and /keys/changes", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    const a0 = (await sync(server, alice)).next_batch;
    const c0 = (await sync(server, carol)).next_batch;

    await member(server, roomId, carol.userId, "join");
    const a1 = await sync(server, alice, a0);
    assertEquals(a1.device_lists, { changed: [carol.userId], left: [] });
    // Carol joined a room: everyone in it is new to her.
    const c1 = await sync(server, carol, c0);
    assertEquals(c1.device_lists, { changed: [alice.userId, bob.userId], left: [] });

    await member(server, roomId, bob.userId, "leave");
    const a2 = await sync(server, alice, a1.next_batch);
    assertEquals(a2.device_lists, { changed: [], left: [bob.userId] });
    assertEquals((await keyChanges(server, alice, a0, a2.next_batch)).body, {
      changed: [carol.userId],
      left: [bob.userId],
    });

    // Carol leaves her only room shared with alice: alice is left for her, she for alice. Bob
    // left in the same window of carol's, so he is left for her too.
    await member(server, roomId, carol.userId, "leave");
    const c2 = await sync(server, carol, c1.next_batch);
    assertEquals(c2.device_lists, { changed: [], left: [alice.userId, bob.userId] });
    const a3 = await sync(server, alice, a2.next_batch);
    assertEquals(a3.device_lists, { changed: [], left: [carol.userId] });
    // Alice's new keys are no longer carol's business.
    await keysChanged(server, alice);
    const c3 = await sync(server, carol, c2.next_batch, 0);
    assertEquals(c3.device_lists, { changed: [], left: [] });
  } finally {
    server.close();
  }
});

Deno.test("a long-polling sync wakes when a room-mate's device list changes", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    const since = (await sync(server, bob)).next_batch;
    const watching = server.deps.syncNotifier.watching;
    const polling = sync(server, bob, since, 20_000);
    // Change the keys only once bob's sync is waiting, so only the wake-up can deliver them.
    while (server.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await keysChanged(server, alice);
    const woken = await polling;
    // Had nothing woken it, the sync would have answered at its timeout with the read it made
    // before the change: an empty list.
    assertEquals(woken.device_lists, { changed: [alice.userId], left: [] });
    assert(woken.next_batch > since);
  } finally {
    server.close();
  }
});

Deno.test("a real /keys/upload by a room-mate wakes a long-poll and shows in /keys/changes", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    const since = (await sync(server, bob)).next_batch;
    const watching = server.deps.syncNotifier.watching;
    const polling = sync(server, bob, since, 20_000);
    while (server.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const device = await newTestDevice(alice.userId, alice.deviceId);
    const upload = await server.request("POST", "/_matrix/client/v3/keys/upload", {
      token: alice.accessToken,
      body: { device_keys: await device.deviceKeys() },
    });
    assertEquals(upload.status, 200, JSON.stringify(upload.body));
    const woken = await polling;
    assertEquals(woken.device_lists, { changed: [alice.userId], left: [] });
    const changes = await keyChanges(server, bob, since, woken.next_batch);
    assertEquals(changes.body, { changed: [alice.userId], left: [] });
  } finally {
    server.close();
  }
});

Deno.test("renaming a device tells room-mates, keys or not (clients list devices too)", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    const rename = (name: string) =>
      server.request("PUT", `/_matrix/client/v3/devices/${alice.deviceId}`, {
        token: alice.accessToken,
        body: { display_name: name },
      });
    const before = (await sync(server, bob)).next_batch;
    assertEquals((await rename("laptop")).status, 200);
    const keyless = await sync(server, bob, before);
    assertEquals(keyless.device_lists, { changed: [alice.userId], left: [] });

    const device = await newTestDevice(alice.userId, alice.deviceId);
    await server.request("POST", "/_matrix/client/v3/keys/upload", {
      token: alice.accessToken,
      body: { device_keys: await device.deviceKeys() },
    });
    const uploaded = (await sync(server, bob, keyless.next_batch)).next_batch;
    assertEquals((await rename("work laptop")).status, 200);
    const renamed = await sync(server, bob, uploaded);
    assertEquals(renamed.device_lists, { changed: [alice.userId], left: [] });
    const query = await server.request("POST", "/_matrix/client/v3/keys/query", {
      token: bob.accessToken,
      body: { device_keys: { [alice.userId]: [] } },
    });
    assertEquals(
      query.body.device_keys[alice.userId][alice.deviceId].unsigned.device_display_name,
      "work laptop",
    );
  } finally {
    server.close();
  }
});

Deno.test("/keys/changes refuses missing and malformed tokens", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const token = (await sync(server, alice)).next_batch;
    const get = (query: string, accessToken?: string) =>
      server.request("GET", `/_matrix/client/v3/keys/changes${query}`, { token: accessToken });
    assertEquals((await get(`?from=${token}&to=${token}`)).body.errcode, "M_MISSING_TOKEN");
    for (
      const [query, errcode] of [
        ["", "M_MISSING_PARAM"],
        [`?from=${token}`, "M_MISSING_PARAM"],
        [`?to=${token}`, "M_MISSING_PARAM"],
        [`?from=bogus&to=${token}`, "M_INVALID_PARAM"],
        [`?from=${token}&to=t42`, "M_INVALID_PARAM"],
        [`?from=${token}&to=s${"f".repeat(21)}`, "M_INVALID_PARAM"],
      ]
    ) {
      const res = await get(query, alice.accessToken);
      assertEquals([res.status, res.body.errcode], [400, errcode], query);
    }
    assertEquals((await get(`?from=${token}&to=${token}`, alice.accessToken)).body, {
      changed: [],
      left: [],
    });
  } finally {
    server.close();
  }
});
