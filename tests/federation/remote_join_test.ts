/**
 * Joining a room held by another server, over the in-process network: by room ID with
 * `server_name`/`via` and by a remote alias; the send_join answer checked before anything is
 * stored; a join cut short between staging and its commit resumed.
 */
import { assert, assertEquals } from "../assert.ts";
import { type Network, type NetworkServer } from "./in_process_network.ts";
import { withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppendRequest } from "../../domain/ports/event_store.ts";

const A = "a.test";
const B = "b.test";

const inNetwork = (fn: (net: Network) => Promise<void>) =>
  withNetwork(fn, [A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });

/** A public room on `server` made by `user`, with one message in it. */
async function publicRoom(
  server: NetworkServer,
  user: RegisteredUser,
  alias?: string,
  version = "10",
) {
  const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
    token: user.accessToken,
    body: {
      preset: "public_chat",
      room_version: version,
      ...(alias ? { room_alias_name: alias } : {}),
    },
  });
  assertEquals(created.status, 200, JSON.stringify(created.body));
  const roomId: string = created.body.room_id;
  await send(server, user, roomId, "before the join");
  return roomId;
}

async function send(server: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  const sent = await server.request(
    "PUT",
    `/_matrix/client/v3/rooms/${
      encodeURIComponent(roomId)
    }/send/m.room.message/${crypto.randomUUID()}`,
    { token: user.accessToken, body: { msgtype: "m.text", body } },
  );
  assertEquals(sent.status, 200, JSON.stringify(sent.body));
  return sent.body.event_id as string;
}

/** Joined members as the store's membership projection has them. */
async function storedMembers(server: NetworkServer, roomId: string) {
  const members = await server.deps.eventStore.members(roomId, ["join"]);
  return members.map((m) => m.userId).sort();
}

/** Joined members as a client sees them (through the read pipeline). */
async function memberships(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const state = await server.request(
    "GET",
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
    { token: user.accessToken },
  );
  assertEquals(state.status, 200, JSON.stringify(state.body));
  return Object.keys(state.body.joined).sort();
}

function join(server: NetworkServer, user: RegisteredUser, target: string, query = "") {
  return server.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(target)}${query}`, {
    token: user.accessToken,
    body: {},
  });
}

for (const version of ["1", "10", "12"]) {
  Deno.test(`remote join: B's user joins a room created on A by ID through server_name (v${version})`, async () => {
    await inNetwork(async (net) => {
      const a = net.servers[A];
      const b = net.servers[B];
      const alice = await a.register("alice");
      const bob = await b.register("bob");
      const roomId = await publicRoom(a, alice, undefined, version);

      // Without a server to ask, B cannot know where the room is.
      const nowhere = await b.request(
        "POST",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`,
        { token: bob.accessToken, body: {} },
      );
      // A v10+ room ID names its creating server, which is asked last; v12 IDs name none.
      assert(nowhere.status === 200 || nowhere.status === 404, JSON.stringify(nowhere.body));
      if (nowhere.status === 404) {
        const joined = await join(b, bob, roomId, `?server_name=${A}`);
        assertEquals(joined.status, 200, JSON.stringify(joined.body));
        assertEquals(joined.body.room_id, roomId);
      }

      // Both sides agree on who is in the room.
      const expected = [alice.userId, bob.userId].sort();
      assertEquals(await storedMembers(b, roomId), expected);
      // B's client sees the room's state from before the join (outliers) through the pipeline.
      assertEquals(await memberships(b, bob, roomId), expected);
      assertEquals(await memberships(a, alice, roomId), expected);
      // B holds the room's state, its create event included, and a head for the room.
      const head = await b.deps.eventStore.roomHead(roomId);
      assert(head !== null);
      const create = await b.request(
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.create/`,
        { token: bob.accessToken },
      );
      assertEquals(create.status, 200, JSON.stringify(create.body));
      // Joined rooms list it; the pending-join record is gone.
      const rooms = await b.request("GET", "/_matrix/client/v3/joined_rooms", {
        token: bob.accessToken,
      });
      assertEquals(rooms.body.joined_rooms, [roomId]);
      assertEquals(await b.deps.remoteJoiner.pendingJoins(), []);
      // B's initial sync shows the joined room with the state from before the join.
      const sync = await b.request("GET", "/_matrix/client/v3/sync", { token: bob.accessToken });
      assertEquals(sync.status, 200, JSON.stringify(sync.body));
      const synced = sync.body.rooms.join[roomId];
      const members = [...synced.state.events, ...synced.timeline.events]
        .filter((e: { type: string }) => e.type === "m.room.member")
        .map((e: { state_key: string }) => e.state_key);
      assert(members.includes(alice.userId), JSON.stringify(members));
      // And B's user can talk in it.
      await send(b, bob, roomId, "hello from B");
    });
  });
}

Deno.test("remote join: by a remote alias, resolved through query/directory", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice, "lobby");
    const joined = await join(b, bob, `#lobby:${A}`);
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    assertEquals(joined.body.room_id, roomId);
    assertEquals(await storedMembers(b, roomId), [alice.userId, bob.userId].sort());
    assert(net.log.some((r) => r.path.startsWith("/_matrix/federation/v1/query/directory")));
    // Once B is in the room, another of its users joins through the alias locally.
    const carol = await b.register("carol");
    const makeJoins = net.log.filter((r) => r.path.includes("/make_join/")).length;
    const again = await join(b, carol, `#lobby:${A}`);
    assertEquals(again.status, 200, JSON.stringify(again.body));
    assertEquals(net.log.filter((r) => r.path.includes("/make_join/")).length, makeJoins);
    assert((await storedMembers(b, roomId)).includes(carol.userId));
    // An alias A does not know is a 404, and nothing is stored.
    const unknown = await join(b, bob, `#nothing:${A}`);
    assertEquals(unknown.status, 404, JSON.stringify(unknown.body));
  });
});

Deno.test("remote join: messages flow both ways after the join", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    assertEquals((await join(b, bob, roomId, `?via=${A}`)).status, 200);

    const fromAlice = await send(a, alice, roomId, "hello from A");
    await a.deps.federationSender.runOnce();
    const fromBob = await send(b, bob, roomId, "hello from B");
    await b.deps.federationSender.runOnce();

    const seenOnB = await b.deps.eventStore.getEvent(fromAlice);
    const seenOnA = await a.deps.eventStore.getEvent(fromBob);
    assertEquals(seenOnB?.status, "accepted");
    assertEquals(seenOnA?.status, "accepted");
  });
});

Deno.test("remote join: a send_join answer with a forged state event is refused, nothing stored", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    // A's answer is altered in flight: the topic's content is kept but its signature forged.
    net.intercept(async (request) => {
      if (!request.path.includes("/send_join/")) return "deliver";
      net.intercept(undefined);
      const real = await net.transportFor(request.origin).request(request);
      net.intercept((r) => r.path.includes("/send_join/") ? forge(real.body) : "deliver");
      return forge(real.body);
    });
    const refused = await join(b, bob, roomId, `?server_name=${A}`);
    net.intercept(undefined);
    assert(refused.status >= 400, JSON.stringify(refused.body));
    assertEquals(await b.deps.eventStore.roomHead(roomId), null);
    const createId = (await a.deps.eventStore.currentState(roomId)).get(
      "m.room.create\u0000" as never,
    )!;
    assertEquals((await b.deps.eventStore.findEvents([createId])).size, 0);
    assertEquals(await b.deps.remoteJoiner.pendingJoins(), []);
    // A's honest answer then goes through.
    assertEquals((await join(b, bob, roomId, `?server_name=${A}`)).status, 200);
  });
});

Deno.test("remote join: a forged state event the join does not rest on is dropped, the join goes on", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    net.intercept(async (request) => {
      if (!request.path.includes("/send_join/")) return "deliver";
      net.intercept(undefined);
      const real = await net.transportFor(request.origin).request(request);
      return forge(real.body, "m.room.history_visibility");
    });
    const joined = await join(b, bob, roomId, `?server_name=${A}`);
    net.intercept(undefined);
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    const forgedId = (await a.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.history_visibility",
      "",
    ))!;
    assertEquals((await b.deps.eventStore.findEvents([forgedId])).size, 0);
    assertEquals(
      await b.deps.eventStore.currentStateEventId(roomId, "m.room.history_visibility", ""),
      null,
    );
    assertEquals(await storedMembers(b, roomId), [alice.userId, bob.userId].sort());
  });
});

/** A send_join answer whose state event of `type` carries a signature that is not A's. */
function forge(body: unknown, type = "m.room.power_levels") {
  const answer = structuredClone(body) as JsonObject;
  const state = answer.state as JsonObject[];
  const pl = state.find((e) => e.type === type)!;
  const signatures = pl.signatures as Record<string, Record<string, string>>;
  for (const server of Object.values(signatures)) {
    for (const keyId of Object.keys(server)) {
      const sig = server[keyId];
      server[keyId] = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    }
  }
  return { status: 200, body: answer };
}

Deno.test("remote join: a crash between staging and the join's commit resumes", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    // B "dies" at the join's commit: outliers and the staged state are written, the join not.
    const store = b.deps.eventStore;
    const append = store.append.bind(store);
    store.append = (request: AppendRequest) => {
      if (request.roomId === roomId) return Promise.reject(new Error("process died"));
      return append(request);
    };
    const failed = await join(b, bob, roomId, `?server_name=${A}`);
    assertEquals(failed.status, 500);
    store.append = append;
    const [pending] = await b.deps.remoteJoiner.pendingJoins();
    assertEquals(pending.roomId, roomId);
    assert(pending.staged !== undefined, "the state was staged before the crash");
    assertEquals(await store.roomHead(roomId), null);

    // Start-up finishes it without asking A again.
    const before = net.log.length;
    await b.deps.remoteJoiner.resumePending();
    assertEquals(net.log.slice(before).filter((r) => r.path.includes("send_join")), []);
    assertEquals(await storedMembers(b, roomId), [alice.userId, bob.userId].sort());
    assertEquals(await b.deps.remoteJoiner.pendingJoins(), []);
    const joinId = (await store.currentStateEventId(roomId, "m.room.member", bob.userId))!;
    assertEquals(joinId, pending.joinEventId);
  });
});

Deno.test("remote join: a crash before staging resumes on the next attempt with the same event", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    const store = b.deps.eventStore;
    const stage = store.stageState.bind(store);
    store.stageState = () => Promise.reject(new Error("process died"));
    assertEquals((await join(b, bob, roomId, `?server_name=${A}`)).status, 500);
    store.stageState = stage;
    const [pending] = await b.deps.remoteJoiner.pendingJoins();
    assertEquals(pending.staged, undefined);
    // The user tries again: the same signed join is sent again and stored.
    assertEquals((await join(b, bob, roomId, `?server_name=${A}`)).status, 200);
    const joinId = await store.currentStateEventId(roomId, "m.room.member", bob.userId);
    assertEquals(joinId, pending.joinEventId);
    assertEquals(await b.deps.remoteJoiner.pendingJoins(), []);
  });
});

Deno.test("remote join: two join requests at once make one join", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    const [first, second] = await Promise.all([
      join(b, bob, roomId, `?server_name=${A}`),
      join(b, bob, roomId, `?server_name=${A}`),
    ]);
    assertEquals([first.status, second.status], [200, 200]);
    assertEquals(net.log.filter((r) => r.path.includes("/make_join/")).length, 1);
    assertEquals(await storedMembers(b, roomId), [alice.userId, bob.userId].sort());
  });
});

Deno.test("remote join: a restricted room comes back co-signed by the resident and is joined", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const space = await publicRoom(a, alice);
    const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: {
        room_version: "10",
        initial_state: [{
          type: "m.room.join_rules",
          state_key: "",
          content: {
            join_rule: "restricted",
            allow: [{ type: "m.room_membership", room_id: space }],
          },
        }],
      },
    });
    assertEquals(created.status, 200, JSON.stringify(created.body));
    const restricted: string = created.body.room_id;
    // Not in the space yet: A names no authoriser, and the join is refused.
    const refused = await join(b, bob, restricted, `?server_name=${A}`);
    assertEquals(refused.status, 403, JSON.stringify(refused.body));
    assertEquals(await b.deps.eventStore.roomHead(restricted), null);
    // In the space: A authorises the join and co-signs it.
    assertEquals((await join(b, bob, space, `?server_name=${A}`)).status, 200);
    const joined = await join(b, bob, restricted, `?server_name=${A}`);
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    const joinId = (await b.deps.eventStore.currentStateEventId(
      restricted,
      "m.room.member",
      bob.userId,
    ))!;
    const event = (await b.deps.eventStore.getEvent(joinId))!;
    assertEquals(event.pdu.content.join_authorised_via_users_server, alice.userId);
    assert(event.pdu.signatures[A] !== undefined, "co-signed by A");
    assert(event.pdu.signatures[B] !== undefined, "signed by B");
    assertEquals(
      await a.deps.eventStore.currentStateEventId(restricted, "m.room.member", bob.userId),
      joinId,
    );
  });
});

Deno.test("remote join: after its last user left, B rejoins through the room's other servers", async () => {
  await inNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await publicRoom(a, alice);
    assertEquals((await join(b, bob, roomId, `?server_name=${A}`)).status, 200);
    const left = await b.request(
      "POST",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(left.status, 200, JSON.stringify(left.body));
    await b.deps.federationSender.runOnce();
    await send(a, alice, roomId, "while bob was away");
    // B holds the room but none of its users is in it: the join goes through A, named by the
    // room's membership, with no via given.
    const makeJoins = net.log.filter((r) => r.path.includes("/make_join/")).length;
    const rejoined = await b.request(
      "POST",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(rejoined.status, 200, JSON.stringify(rejoined.body));
    assertEquals(net.log.filter((r) => r.path.includes("/make_join/")).length, makeJoins + 1);
    assertEquals(await storedMembers(b, roomId), [alice.userId, bob.userId].sort());
    assertEquals(await storedMembers(a, roomId), [alice.userId, bob.userId].sort());
  });
});
