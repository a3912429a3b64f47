/**
 * Inbound invites are bounded: at most 100 open per local user (the 101st refused with 403
 * M_FORBIDDEN, writing nothing, even when invites race for the last slot; a rejection frees a
 * slot), and each inviting server is rate limited (429 M_LIMIT_EXCEEDED with retry_after_ms).
 * The invites are built and signed with A's key by hand, one per room, as a hostile server would.
 */
import assert from "node:assert/strict";
import { type Network, startNetwork } from "./in_process_network.ts";
import { MAX_OPEN_REMOTE_INVITES } from "../../domain/federation/remote_invite_quota.ts";
import { signEvent } from "../../domain/protocol/event_signing.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { computeContentHash } from "../../domain/protocol/hashing.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";

const A = "a.test";
const B = "b.test";
const C = "c.test";
const V10 = roomVersion("10")!;
const enc = encodeURIComponent;
const PREV = `$${"A".repeat(43)}`;

/** `PUT /v2/invite` from `origin` to B of an invite of `target` into `roomId`, signed by `origin`. */
async function invite(net: Network, origin: string, roomId: string, target: string) {
  const unsigned: JsonObject = {
    room_id: roomId,
    sender: `@mallory:${origin}`,
    type: "m.room.member",
    state_key: target,
    content: { membership: "invite" },
    origin_server_ts: Date.now(),
    // Events of the room B never sees: an invite into a room we are not in cites them blind.
    depth: 3,
    prev_events: [PREV],
    auth_events: [PREV],
  };
  const hashed = { ...unsigned, hashes: { sha256: computeContentHash(unsigned, V10) } };
  const signed = await signEvent(
    { ...hashed, signatures: {} } as unknown as Pdu,
    V10,
    origin,
    net.servers[origin].deps.keyring.current,
  );
  const eventId = computeEventId(signed, V10);
  const res = await net.transportFor(origin).request({
    method: "PUT",
    destination: B,
    path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(eventId)}`,
    body: { room_version: "10", event: signed as unknown as JsonObject, invite_room_state: [] },
  });
  return { ...res, eventId };
}

const errcode = (body: unknown) => (body as JsonObject | null)?.errcode;

async function invitesSynced(net: Network, token: string): Promise<string[]> {
  const synced = await net.servers[B].request("GET", "/_matrix/client/v3/sync", { token });
  assert.equal(synced.status, 200, JSON.stringify(synced.body));
  return Object.keys(synced.body.rooms?.invite ?? {});
}

Deno.test("invite quota: the 101st open invite is refused and writes nothing; a rejection frees a slot", async () => {
  // Rate limits off (the network's default): the cap is what this test meets.
  const net = await startNetwork([A, B]);
  try {
    const bob = await net.servers[B].register("bob");
    for (let i = 0; i < MAX_OPEN_REMOTE_INVITES; i++) {
      const res = await invite(net, A, `!r${i}:${A}`, bob.userId);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const over = await invite(net, A, `!over:${A}`, bob.userId);
    assert.equal(over.status, 403, JSON.stringify(over.body));
    assert.equal(errcode(over.body), "M_FORBIDDEN");
    assert.equal(await net.servers[B].deps.remoteMemberships.get(bob.userId, `!over:${A}`), null);
    assert.equal(
      (await net.servers[B].deps.eventStore.findEvents([over.eventId])).has(over.eventId),
      false,
    );
    const listed = await invitesSynced(net, bob.accessToken);
    assert.equal(listed.length, MAX_OPEN_REMOTE_INVITES);
    assert.ok(!listed.includes(`!over:${A}`));

    // Bob rejects one (A knows no such room: the leave is made here): the invite then passes.
    const left = await net.servers[B].request(
      "POST",
      `/_matrix/client/v3/rooms/${enc(`!r0:${A}`)}/leave`,
      { token: bob.accessToken, body: {} },
    );
    assert.equal(left.status, 200, JSON.stringify(left.body));
    const again = await invite(net, A, `!over:${A}`, bob.userId);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.ok((await invitesSynced(net, bob.accessToken)).includes(`!over:${A}`));
    // Another user's invites are counted apart.
    const carol = await net.servers[B].register("carol");
    assert.equal((await invite(net, A, `!r1:${A}`, carol.userId)).status, 200);
  } finally {
    await net.close();
  }
});

Deno.test("invite quota: invites racing for the last slot: exactly one is recorded", async () => {
  // Rate limits off (the network's default): the cap is what this test meets.
  const net = await startNetwork([A, B]);
  try {
    const bob = await net.servers[B].register("bob");
    for (let i = 0; i < MAX_OPEN_REMOTE_INVITES - 1; i++) {
      assert.equal((await invite(net, A, `!r${i}:${A}`, bob.userId)).status, 200);
    }
    const racing = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => invite(net, A, `!race${i}:${A}`, bob.userId)),
    );
    const statuses = racing.map((r) => r.status).sort();
    assert.deepEqual(
      statuses,
      [200, 403, 403, 403, 403],
      JSON.stringify(racing.map((r) => errcode(r.body))),
    );
    const held = await net.servers[B].deps.remoteMemberships.ofUser(bob.userId);
    assert.equal(held.filter((m) => m.membership === "invite").length, MAX_OPEN_REMOTE_INVITES);
    const winner = racing.find((r) => r.status === 200)!;
    assert.ok(held.some((m) => m.eventId === winner.eventId));
  } finally {
    await net.close();
  }
});

Deno.test("invite quota: each inviting server is rate limited with 429 and retry_after_ms", async () => {
  // A fixed clock: no bucket refills while the test runs.
  const now = Date.now();
  const net = await startNetwork([A, B, C], {
    now: () => now,
    envFor: { [B]: { TESSERA_RATE_LIMITS: "on" } },
  });
  try {
    const bob = await net.servers[B].register("bob");
    let limited: Awaited<ReturnType<typeof invite>> | undefined;
    for (let i = 0; i < 60 && limited === undefined; i++) {
      const res = await invite(net, A, `!r${i}:${A}`, bob.userId);
      if (res.status === 429) limited = { ...res, roomId: `!r${i}:${A}` } as typeof res;
      else assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    assert.ok(limited, "A was never rate limited");
    assert.equal(errcode(limited.body), "M_LIMIT_EXCEEDED");
    const retry = (limited.body as JsonObject).retry_after_ms;
    assert.ok(typeof retry === "number" && retry > 0, JSON.stringify(limited.body));
    assert.equal(
      (await net.servers[B].deps.eventStore.findEvents([limited.eventId])).has(limited.eventId),
      false,
    );
    // The limit is A's alone: C's invite still goes through.
    assert.equal((await invite(net, C, `!c:${C}`, bob.userId)).status, 200);
  } finally {
    await net.close();
  }
});
