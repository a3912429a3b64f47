/** The room directory over HTTP: aliases, room visibility and /publicRooms search and paging. */
import { assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";
const ALIAS = encodeURIComponent("#lobby:example.org:8448");

async function setup() {
  const server = await startTestServer();
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const res = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset: "public_chat", name: "Lobby", topic: "Say hello" },
  });
  return { server, alice, bob, roomId: res.body.room_id as string };
}

Deno.test("aliases: put, resolve, list, conflicts, delete (and canonical alias follows)", async () => {
  const { server, alice, bob, roomId } = await setup();
  try {
    const room = encodeURIComponent(roomId);
    const put = await server.request("PUT", `${V3}/directory/room/${ALIAS}`, {
      token: alice.accessToken,
      body: { room_id: roomId },
    });
    assertEquals(put.status, 200);
    const got = await server.request("GET", `${V3}/directory/room/${ALIAS}`);
    assertEquals(got.body, { room_id: roomId, servers: ["example.org:8448"] });
    const taken = await server.request("PUT", `${V3}/directory/room/${ALIAS}`, {
      token: alice.accessToken,
      body: { room_id: roomId },
    });
    assertEquals(taken.status, 409);
    const list = await server.request("GET", `${V3}/rooms/${room}/aliases`, {
      token: alice.accessToken,
    });
    assertEquals(list.body, { aliases: ["#lobby:example.org:8448"] });
    const outsider = await server.request("GET", `${V3}/rooms/${room}/aliases`, {
      token: bob.accessToken,
    });
    assertEquals(outsider.status, 403);

    // The canonical alias names it; deleting the alias takes it out of the state too.
    await server.deps.sender.send({
      roomId,
      sender: alice.userId,
      type: "m.room.canonical_alias",
      stateKey: "",
      content: { alias: "#lobby:example.org:8448" },
    });
    const bobDeletes = await server.request("DELETE", `${V3}/directory/room/${ALIAS}`, {
      token: bob.accessToken,
    });
    assertEquals([bobDeletes.status, bobDeletes.body.errcode], [403, "M_FORBIDDEN"]);
    const del = await server.request("DELETE", `${V3}/directory/room/${ALIAS}`, {
      token: alice.accessToken,
    });
    assertEquals(del.status, 200);
    const gone = await server.request("GET", `${V3}/directory/room/${ALIAS}`);
    assertEquals([gone.status, gone.body.errcode], [404, "M_NOT_FOUND"]);
    const id = await server.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.canonical_alias",
      "",
    );
    assertEquals((await server.deps.eventStore.getEvent(id!))!.pdu.content, {});
    const delAgain = await server.request("DELETE", `${V3}/directory/room/${ALIAS}`, {
      token: alice.accessToken,
    });
    assertEquals(delAgain.status, 404);
  } finally {
    server.close();
  }
});

Deno.test("aliases: bad input and non-members are refused, nothing written", async () => {
  const { server, alice, bob, roomId } = await setup();
  try {
    const cases: [string, unknown, string | undefined, number, string][] = [
      [`${V3}/directory/room/${ALIAS}`, { room_id: roomId }, bob.accessToken, 403, "M_FORBIDDEN"],
      [`${V3}/directory/room/${ALIAS}`, {}, alice.accessToken, 400, "M_MISSING_PARAM"],
      [`${V3}/directory/room/${ALIAS}`, { room_id: "x" }, alice.accessToken, 400, "M_BAD_JSON"],
      [`${V3}/directory/room/${ALIAS}`, "{", alice.accessToken, 400, "M_NOT_JSON"],
      [
        `${V3}/directory/room/lobby`,
        { room_id: roomId },
        alice.accessToken,
        400,
        "M_INVALID_PARAM",
      ],
      [
        `${V3}/directory/room/${encodeURIComponent("#x:elsewhere.org")}`,
        { room_id: roomId },
        alice.accessToken,
        400,
        "M_INVALID_PARAM",
      ],
      [
        `${V3}/directory/room/${ALIAS}`,
        { room_id: "!missing:example.org:8448" },
        alice.accessToken,
        404,
        "M_NOT_FOUND",
      ],
      [`${V3}/directory/room/${ALIAS}`, { room_id: roomId }, undefined, 401, "M_MISSING_TOKEN"],
    ];
    for (const [path, body, token, status, errcode] of cases) {
      const res = await server.request("PUT", path, { body, token });
      assertEquals([res.status, res.body.errcode], [status, errcode], `${path} ${body}`);
    }
    assertEquals(await server.deps.roomDirectory.aliasesOfRoom(roomId), []);
  } finally {
    server.close();
  }
});

Deno.test("directory visibility and /publicRooms: publish, search, page", async () => {
  const { server, alice, bob, roomId } = await setup();
  try {
    const room = encodeURIComponent(roomId);
    const initial = await server.request("GET", `${V3}/directory/list/room/${room}`);
    assertEquals(initial.body, { visibility: "private" });
    const bobSets = await server.request("PUT", `${V3}/directory/list/room/${room}`, {
      token: bob.accessToken,
      body: { visibility: "public" },
    });
    assertEquals(bobSets.status, 403);
    const bad = await server.request("PUT", `${V3}/directory/list/room/${room}`, {
      token: alice.accessToken,
      body: { visibility: "everyone" },
    });
    assertEquals([bad.status, bad.body.errcode], [400, "M_BAD_JSON"]);
    const set = await server.request("PUT", `${V3}/directory/list/room/${room}`, {
      token: alice.accessToken,
      body: { visibility: "public" },
    });
    assertEquals(set.status, 200);
    assertEquals(
      (await server.request("GET", `${V3}/directory/list/room/${room}`)).body.visibility,
      "public",
    );
    const unknown = await server.request("GET", `${V3}/directory/list/room/!x:example.org:8448`);
    assertEquals(unknown.status, 404);

    // Two more published rooms; Bob joins the first so it sorts first.
    for (const name of ["Garden", "Cellar"]) {
      await server.request("POST", `${V3}/createRoom`, {
        token: alice.accessToken,
        body: { visibility: "public", name },
      });
    }
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    // A limit is digits: an empty one is not 0, nor is 1e2 a hundred.
    for (const bad of ["", "1e2", "0x10", "-1", "1001"]) {
      const refused = await server.request("GET", `${V3}/publicRooms?limit=${bad}`);
      assertEquals(refused.status, 400, `limit=${bad}`);
    }
    const first = await server.request("GET", `${V3}/publicRooms?limit=2`);
    assertEquals(first.body.total_room_count_estimate, 3);
    assertEquals(first.body.chunk.length, 2);
    assertEquals(first.body.chunk[0].room_id, roomId);
    assertEquals(first.body.chunk[0].num_joined_members, 2);
    assertEquals(first.body.chunk[0].topic, "Say hello");
    assertEquals(first.body.chunk[0].join_rule, "public");
    const second = await server.request(
      "GET",
      `${V3}/publicRooms?limit=2&since=${first.body.next_batch}`,
    );
    assertEquals(second.body.chunk.length, 1);
    assertEquals(second.body.next_batch, undefined);
    assertEquals(typeof second.body.prev_batch, "string");

    const search = await server.request("POST", `${V3}/publicRooms`, {
      token: bob.accessToken,
      body: { filter: { generic_search_term: "garden" } },
    });
    assertEquals(search.body.chunk.map((r: { name: string }) => r.name), ["Garden"]);
    // null means "not given" (a pager sending the first page's absent token back).
    const nulls = await server.request("POST", `${V3}/publicRooms`, {
      token: bob.accessToken,
      body: { limit: 2, since: null, filter: { generic_search_term: null } },
    });
    assertEquals(nulls.body.chunk.map((r: { room_id: string }) => r.room_id), [
      first.body.chunk[0].room_id,
      first.body.chunk[1].room_id,
    ]);
    const nullFilter = await server.request("POST", `${V3}/publicRooms`, {
      token: bob.accessToken,
      body: { filter: null, limit: null },
    });
    assertEquals(nullFilter.body.chunk.length, 3);
    const badSince = await server.request("GET", `${V3}/publicRooms?since=zzz`);
    assertEquals([badSince.status, badSince.body.errcode], [400, "M_INVALID_PARAM"]);
    const badLimit = await server.request("GET", `${V3}/publicRooms?limit=many`);
    assertEquals([badLimit.status, badLimit.body.errcode], [400, "M_INVALID_PARAM"]);
    const badBody = await server.request("POST", `${V3}/publicRooms`, {
      token: bob.accessToken,
      body: { limit: "ten" },
    });
    assertEquals([badBody.status, badBody.body.errcode], [400, "M_BAD_JSON"]);
    const unpublish = await server.request("PUT", `${V3}/directory/list/room/${room}`, {
      token: alice.accessToken,
      body: { visibility: "private" },
    });
    assertEquals(unpublish.status, 200);
    const after = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(after.body.total_room_count_estimate, 2);
  } finally {
    server.close();
  }
});
