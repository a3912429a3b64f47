/**
 * Every room version from 1 to 12 between two Tessera servers (in-process network): a room of
 * that version created on A is joined from B, messages cross both ways, each accepted by the
 * other side and readable by its client, and B's /messages backfills what was said before the
 * join. A room version the joining server does not speak gets
 * M_INCOMPATIBLE_ROOM_VERSION, from the resident's make_join and at the joining user's /join.
 */
import assert from "node:assert/strict";
import { type NetworkServer } from "./in_process_network.ts";
import { ok, say, withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { supportedRoomVersions } from "../../domain/protocol/room_versions.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;
const VERSIONS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

/** The message bodies `user` reads in `roomId` through /messages, oldest first. */
async function bodies(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const page = await ok(
    server,
    user,
    "GET",
    `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=50`,
  );
  return (page.chunk as { type: string; content: { body?: string } }[])
    .filter((e) => e.type === "m.room.message")
    .map((e) => e.content.body)
    .reverse();
}

Deno.test("room versions: both servers speak versions 1 to 12", () => {
  const ids = supportedRoomVersions().map((v) => v.id);
  for (const id of VERSIONS) assert.ok(ids.includes(id), `version ${id} is not supported`);
});

for (const version of VERSIONS) {
  Deno.test(`room version ${version}: created on A, joined from B, messages both ways`, async () => {
    await withNetwork(async (net) => {
      const a = net.servers[A];
      const b = net.servers[B];
      const alice = await a.register("alice");
      const bob = await b.register("bob");
      const created = await ok(a, alice, "POST", "/_matrix/client/v3/createRoom", {
        preset: "public_chat",
        room_version: version,
      });
      const roomId: string = created.room_id;
      await say(a, alice, roomId, `v${version} before the join`);
      const joined = await ok(
        b,
        bob,
        "POST",
        `/_matrix/client/v3/join/${enc(roomId)}?server_name=${A}`,
        {},
      );
      assert.equal(joined.room_id, roomId);
      // B holds the room at A's version.
      const create = await ok(
        b,
        bob,
        "GET",
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.create/`,
      );
      assert.equal(create.room_version ?? "1", version);

      const fromA = await say(a, alice, roomId, `v${version} from A`);
      await a.deps.federationSender.runOnce();
      const fromB = await say(b, bob, roomId, `v${version} from B`);
      await b.deps.federationSender.runOnce();
      assert.equal((await b.deps.eventStore.getEvent(fromA))?.status, "accepted");
      assert.equal((await a.deps.eventStore.getEvent(fromB))?.status, "accepted");
      // B reads the history from before its join too: /messages backfills it from A.
      const all = [`v${version} before the join`, `v${version} from A`, `v${version} from B`];
      assert.deepEqual(await bodies(a, alice, roomId), all);
      assert.deepEqual(await bodies(b, bob, roomId), all);
      // Both agree on who is in the room.
      for (const [server, user] of [[a, alice], [b, bob]] as const) {
        const members = await ok(
          server,
          user,
          "GET",
          `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`,
        );
        assert.deepEqual(Object.keys(members.joined).sort(), [alice.userId, bob.userId].sort());
      }
    });
  });
}

Deno.test("room versions: a version the joining server does not speak is M_INCOMPATIBLE_ROOM_VERSION", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await ok(a, alice, "POST", "/_matrix/client/v3/createRoom", {
      preset: "public_chat",
      room_version: "12",
    });
    const roomId: string = created.room_id;

    // A server speaking versions 1 to 11 asks A for a join template of this v12 room.
    const older = Array.from({ length: 11 }, (_, i) => `ver=${i + 1}`).join("&");
    const made = await net.transportFor(B).request({
      method: "GET",
      destination: A,
      path: `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(bob.userId)}?${older}`,
    });
    assert.equal(made.status, 400, JSON.stringify(made.body));
    assert.deepEqual(made.body, {
      errcode: "M_INCOMPATIBLE_ROOM_VERSION",
      error: (made.body as { error: string }).error,
      room_version: "12",
    });

    // B's user joining through such a server (B's offer stripped of v12 on the way) is told so,
    // and B stores nothing of the room.
    net.intercept((request) => {
      const offersV12 = /[?&]ver=12(&|$)/.test(request.path);
      if (request.origin !== B || !request.path.includes("/make_join/") || !offersV12) {
        return "deliver";
      }
      // The same request without v12 (it passes this interceptor again, offering no v12).
      const path = request.path.replace(/([?&])ver=12(&|$)/, (_, lead, tail) => tail ? lead : "");
      return net.transportFor(B).request({ ...request, path });
    });
    const refused = await b.request(
      "POST",
      `/_matrix/client/v3/join/${enc(roomId)}?server_name=${A}`,
      {
        token: bob.accessToken,
        body: {},
      },
    );
    net.intercept(undefined);
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.errcode, "M_INCOMPATIBLE_ROOM_VERSION");
    assert.equal(await b.deps.eventStore.roomHead(roomId), null);
    assert.equal(
      (await a.deps.eventStore.members(roomId, ["join"])).some((m) => m.userId === bob.userId),
      false,
    );
  });
});
