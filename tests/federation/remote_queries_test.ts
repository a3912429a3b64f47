/**
 * What local clients ask about another server, answered over federation: a remote user's
 * profile (whole and one field), a remote alias, and a remote server's public room list; and
 * the errors when the other server says no or cannot be reached.
 */
import assert from "node:assert/strict";
import { withNetwork } from "./network_helpers.ts";

const A = "a.test";
const B = "b.test";

Deno.test("a remote user's profile is asked of their server", () =>
  withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const set = await b.request("PUT", `/_matrix/client/v3/profile/${bob.userId}/displayname`, {
      token: bob.accessToken,
      body: { displayname: "Bob of B" },
    });
    assert.equal(set.status, 200);

    const whole = await a.request("GET", `/_matrix/client/v3/profile/${bob.userId}`, {
      token: alice.accessToken,
    });
    assert.equal(whole.status, 200, JSON.stringify(whole.body));
    assert.equal((whole.body as Record<string, unknown>).displayname, "Bob of B");
    const field = await a.request(
      "GET",
      `/_matrix/client/v3/profile/${bob.userId}/displayname`,
      { token: alice.accessToken },
    );
    assert.deepEqual(field.body, { displayname: "Bob of B" });
    assert.ok(
      net.log.some((r) =>
        r.origin === A && r.path.startsWith("/_matrix/federation/v1/query/profile")
      ),
    );

    const nobody = await a.request("GET", `/_matrix/client/v3/profile/@nobody:${B}`, {
      token: alice.accessToken,
    });
    assert.equal(nobody.status, 404);
    assert.equal((nobody.body as Record<string, unknown>).errcode, "M_NOT_FOUND");

    net.setReachable(B, false);
    const down = await a.request("GET", `/_matrix/client/v3/profile/${bob.userId}`, {
      token: alice.accessToken,
    });
    assert.equal(down.status, 502);
  }));

Deno.test("a remote alias resolves through its server, and a remote room list is listed", () =>
  withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await b.request("POST", "/_matrix/client/v3/createRoom", {
      token: bob.accessToken,
      body: {
        preset: "public_chat",
        room_alias_name: "lobby",
        visibility: "public",
        name: "Lobby",
      },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const roomId = (created.body as Record<string, string>).room_id;

    const alias = encodeURIComponent(`#lobby:${B}`);
    const resolved = await a.request("GET", `/_matrix/client/v3/directory/room/${alias}`);
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    const body = resolved.body as { room_id: string; servers: string[] };
    assert.equal(body.room_id, roomId);
    assert.ok(body.servers.includes(B));
    const unknown = await a.request(
      "GET",
      `/_matrix/client/v3/directory/room/${encodeURIComponent(`#nothing:${B}`)}`,
    );
    assert.equal(unknown.status, 404);

    const listed = await a.request("GET", `/_matrix/client/v3/publicRooms?server=${B}`, {
      token: alice.accessToken,
    });
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const chunk = (listed.body as { chunk: { room_id: string; name?: string }[] }).chunk;
    assert.deepEqual(chunk.map((r) => [r.room_id, r.name]), [[roomId, "Lobby"]]);

    const searched = await a.request("POST", `/_matrix/client/v3/publicRooms?server=${B}`, {
      token: alice.accessToken,
      body: { filter: { generic_search_term: "nothing like it" } },
    });
    assert.equal(searched.status, 200, JSON.stringify(searched.body));
    assert.deepEqual((searched.body as { chunk: unknown[] }).chunk, []);

    // Asking another server costs us a request: not for anonymous callers.
    const anonymous = await a.request("GET", `/_matrix/client/v3/publicRooms?server=${B}`);
    assert.equal(anonymous.status, 401);
    const badName = await a.request("GET", "/_matrix/client/v3/publicRooms?server=not%20a%20name", {
      token: alice.accessToken,
    });
    assert.equal(badName.status, 400);
  }));
