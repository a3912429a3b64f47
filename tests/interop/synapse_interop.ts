/**
 * Federation with a real Synapse 1.67, run by scripts/run_synapse_interop.sh (which starts both
 * servers over HTTPS on loopback; `deno task test` does not run this file). Room version 10, the
 * newest Synapse 1.67 knows. Each test builds on the ones before it, in file order: users, then
 * joins both ways, messages both ways, backfill both ways, invites, leave, kick and ban.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  enc,
  eventually,
  type Json,
  register,
  serverNameOf,
  SYNAPSE,
  TESSERA,
  type User,
} from "./interop_helpers.ts";

const run = crypto.randomUUID().slice(0, 8);
const users: Record<string, User> = {};
const rooms: Record<string, string> = {};

Deno.test("users register on both servers", async () => {
  users.alice = await register(TESSERA, `alice-${run}`);
  users.tom = await register(TESSERA, `tom-${run}`);
  users.bob = await register(SYNAPSE, `bob-${run}`);
  users.carol = await register(SYNAPSE, `carol-${run}`);
  assert(users.alice.userId.endsWith(`:${serverNameOf(TESSERA)}`));
  assert(users.bob.userId.endsWith(`:${serverNameOf(SYNAPSE)}`));
});

Deno.test("a Synapse user joins a Tessera room by ID, seeing its earlier history", async () => {
  const created = await users.alice.ok("POST", "/createRoom", {
    preset: "public_chat",
    room_version: "10",
    room_alias_name: `tessera-${run}`,
  });
  rooms.onTessera = created.room_id as string;
  for (let i = 0; i < 5; i++) await users.alice.send(rooms.onTessera, `before bob ${i}`);
  const via = serverNameOf(TESSERA);
  await users.bob.ok("POST", `/join/${enc(rooms.onTessera)}?server_name=${enc(via)}`, {});
  await eventually(
    "Tessera sees Bob joined",
    async () => await users.alice.membershipOf(rooms.onTessera, users.bob.userId) === "join",
  );
  // Synapse backfills the history Tessera holds from before its user joined.
  await eventually("Synapse's /messages has the history from before Bob joined", async () => {
    const bodies = await users.bob.messageBodies(rooms.onTessera);
    return bodies.includes("before bob 0") && bodies.includes("before bob 4");
  });
});

Deno.test("messages cross both ways in the Tessera room", async () => {
  await users.alice.send(rooms.onTessera, "hello from tessera");
  await eventually(
    "Bob sees Alice's message",
    async () => (await users.bob.messageBodies(rooms.onTessera)).includes("hello from tessera"),
  );
  await users.bob.send(rooms.onTessera, "hello from synapse");
  await eventually(
    "Alice sees Bob's message",
    async () => (await users.alice.messageBodies(rooms.onTessera)).includes("hello from synapse"),
  );
});

Deno.test("a Tessera user joins a Synapse room by alias and backfills its history", async () => {
  const created = await users.bob.ok("POST", "/createRoom", {
    preset: "public_chat",
    room_version: "10",
    room_alias_name: `synapse-${run}`,
  });
  rooms.onSynapse = created.room_id as string;
  for (let i = 0; i < 5; i++) await users.bob.send(rooms.onSynapse, `before alice ${i}`);
  const alias = `#synapse-${run}:${serverNameOf(SYNAPSE)}`;
  const joined = await users.alice.ok("POST", `/join/${enc(alias)}`, {});
  assertEquals(joined.room_id, rooms.onSynapse);
  await eventually(
    "Synapse sees Alice joined",
    async () => await users.bob.membershipOf(rooms.onSynapse, users.alice.userId) === "join",
  );
  await eventually("Tessera's /messages backfills what Synapse holds", async () => {
    const bodies = await users.alice.messageBodies(rooms.onSynapse);
    return bodies.includes("before alice 0") && bodies.includes("before alice 4");
  });
});

Deno.test("messages cross both ways in the Synapse room", async () => {
  await users.bob.send(rooms.onSynapse, "synapse room: from bob");
  await eventually(
    "Alice sees Bob's message",
    async () =>
      (await users.alice.messageBodies(rooms.onSynapse)).includes("synapse room: from bob"),
  );
  await users.alice.send(rooms.onSynapse, "synapse room: from alice");
  await eventually(
    "Bob sees Alice's message",
    async () =>
      (await users.bob.messageBodies(rooms.onSynapse)).includes("synapse room: from alice"),
  );
});

Deno.test("a Tessera user invites a Synapse user, who joins", async () => {
  await users.alice.ok("POST", `/rooms/${enc(rooms.onTessera)}/invite`, {
    user_id: users.carol.userId,
  });
  await eventually("Carol sees the invite in /sync", async () => {
    const sync = await users.carol.ok("GET", "/sync?timeout=0");
    const invites = (sync.rooms as Json | undefined)?.invite as Json | undefined;
    return invites !== undefined && rooms.onTessera in invites;
  });
  await users.carol.ok("POST", `/rooms/${enc(rooms.onTessera)}/join`, {});
  await eventually(
    "Tessera sees Carol joined",
    async () => await users.alice.membershipOf(rooms.onTessera, users.carol.userId) === "join",
  );
});

Deno.test("a Synapse user invites a Tessera user, who joins", async () => {
  await users.bob.ok("POST", `/rooms/${enc(rooms.onSynapse)}/invite`, {
    user_id: users.tom.userId,
  });
  await eventually("Tom sees the invite in /sync", async () => {
    const sync = await users.tom.ok("GET", "/sync?timeout=0");
    const invites = (sync.rooms as Json | undefined)?.invite as Json | undefined;
    return invites !== undefined && rooms.onSynapse in invites;
  });
  await users.tom.ok("POST", `/rooms/${enc(rooms.onSynapse)}/join`, {});
  await eventually(
    "Synapse sees Tom joined",
    async () => await users.bob.membershipOf(rooms.onSynapse, users.tom.userId) === "join",
  );
});

Deno.test("a leave on Synapse takes effect on Tessera", async () => {
  await users.carol.ok("POST", `/rooms/${enc(rooms.onTessera)}/leave`, {});
  await eventually(
    "Tessera sees Carol left",
    async () => await users.alice.membershipOf(rooms.onTessera, users.carol.userId) === "leave",
  );
});

Deno.test("a ban on Tessera takes effect on Synapse", async () => {
  await users.alice.ok("POST", `/rooms/${enc(rooms.onTessera)}/ban`, {
    user_id: users.carol.userId,
    reason: "interop ban",
  });
  // Bob is still in the room, so his server hears of the ban.
  await eventually(
    "Synapse sees Carol banned",
    async () => await users.bob.membershipOf(rooms.onTessera, users.carol.userId) === "ban",
  );
  const rejoin = await users.carol.call("POST", `/rooms/${enc(rooms.onTessera)}/join`, {});
  assert(rejoin.status >= 400, `a banned user rejoined: ${JSON.stringify(rejoin.body)}`);
});

Deno.test("a kick on Tessera takes effect on Synapse", async () => {
  await users.alice.ok("POST", `/rooms/${enc(rooms.onTessera)}/kick`, {
    user_id: users.bob.userId,
    reason: "interop kick",
  });
  await eventually(
    "Synapse sees Bob kicked",
    async () => await users.bob.membershipOf(rooms.onTessera, users.bob.userId) === "leave",
  );
});

Deno.test("a ban on Synapse takes effect on Tessera, and the banned user can no longer send", async () => {
  await users.bob.ok("POST", `/rooms/${enc(rooms.onSynapse)}/ban`, {
    user_id: users.tom.userId,
    reason: "interop ban",
  });
  await eventually(
    "Tessera sees Tom banned",
    async () => await users.alice.membershipOf(rooms.onSynapse, users.tom.userId) === "ban",
  );
  const refused = await users.tom.call(
    "PUT",
    `/rooms/${enc(rooms.onSynapse)}/send/m.room.message/${crypto.randomUUID()}`,
    { msgtype: "m.text", body: "after the ban" },
  );
  assertEquals(refused.status, 403);
});

/** Upload `bytes` as `user` on its own server; the mxc URI. */
async function uploadMedia(user: User, bytes: Uint8Array, type: string, name: string) {
  const response = await fetch(
    `${user.base}/_matrix/media/v3/upload?filename=${enc(name)}`,
    {
      method: "POST",
      headers: { authorization: `Bearer ${user.token}`, "content-type": type },
      body: bytes.slice(),
    },
  );
  const body = await response.json();
  assertEquals(response.status, 200, JSON.stringify(body));
  return body.content_uri as string;
}

// Synapse 1.67 predates authenticated media (v1.11): Tessera asks its federation media endpoint,
// hears M_UNRECOGNIZED and falls back to the legacy media API; Synapse fetches ours over the
// legacy API, which the script serves with TESSERA_MEDIA_LEGACY=on (the default, frozen, serves
// no media uploaded after the server's first start there, as Synapse 1.111+ does for its own).
const media = new Uint8Array(150_000).map((_, i) => (i * 7) % 256);

Deno.test("a Tessera user downloads a Synapse user's upload over federation", async () => {
  const mxc = await uploadMedia(users.bob, media, "application/octet-stream", "from bob.bin");
  assert(mxc.startsWith(`mxc://${serverNameOf(SYNAPSE)}/`), mxc);
  const response = await fetch(
    `${TESSERA}/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}`,
    { headers: { authorization: `Bearer ${users.alice.token}` } },
  );
  const bytes = new Uint8Array(await response.arrayBuffer());
  assertEquals(response.status, 200, new TextDecoder().decode(bytes.slice(0, 300)));
  assertEquals(bytes, media);
  assertEquals(
    response.headers.get("content-disposition"),
    "attachment; filename*=utf-8''from%20bob.bin",
  );
});

Deno.test("a Synapse user downloads a Tessera user's upload over federation", async () => {
  const mxc = await uploadMedia(users.alice, media, "image/png", "from-alice.png");
  assert(mxc.startsWith(`mxc://${serverNameOf(TESSERA)}/`), mxc);
  // Synapse 1.67 serves its clients media on the (then unauthenticated) legacy path.
  const response = await fetch(
    `${SYNAPSE}/_matrix/media/v3/download/${mxc.slice("mxc://".length)}`,
    { headers: { authorization: `Bearer ${users.bob.token}` } },
  );
  const bytes = new Uint8Array(await response.arrayBuffer());
  assertEquals(response.status, 200, new TextDecoder().decode(bytes.slice(0, 300)));
  assertEquals(bytes, media);
});
