/** Remote memberships in KV: replaced per (user, room), large PDUs chunked, versionstamps kept. */
import assert from "node:assert/strict";
import {
  KvRemoteMembershipStore,
  REMOTE_LEAVE_RETENTION_MS,
} from "../../kv/remote_membership_store.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { MatrixError } from "../../domain/errors.ts";

function pdu(membership: string, extra: Record<string, unknown> = {}): Pdu {
  return {
    room_id: "!r:a.test",
    sender: "@alice:a.test",
    type: "m.room.member",
    state_key: "@bob:b.test",
    content: { membership },
    origin_server_ts: 1,
    depth: 3,
    prev_events: [],
    auth_events: [],
    hashes: { sha256: "x" },
    signatures: {},
    ...extra,
  };
}

Deno.test("remote memberships: the latest per room wins, chunked PDUs read back whole", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRemoteMembershipStore(kv);
    const big = pdu("invite", {
      unsigned: {
        invite_room_state: [{ type: "m.room.topic", content: { topic: "t".repeat(150_000) } }],
      },
    });
    const first = await store.record({
      userId: "@bob:b.test",
      roomId: "!r:a.test",
      membership: "invite",
      eventId: "$invite",
      pdu: big,
      roomVersion: "10",
      servers: ["a.test"],
    });
    const got = await store.get("@bob:b.test", "!r:a.test");
    assert.deepEqual(got?.pdu, big);
    assert.equal(got?.versionstamp, first);
    // A smaller record replaces it: no stale chunk is read as part of it.
    const second = await store.record({
      userId: "@bob:b.test",
      roomId: "!r:a.test",
      membership: "leave",
      eventId: "$leave",
      pdu: pdu("leave"),
      roomVersion: "10",
      servers: ["a.test"],
    });
    assert.ok(second > first);
    await store.record({
      userId: "@bob:b.test",
      roomId: "!s:a.test",
      membership: "knock",
      eventId: "$knock",
      pdu: pdu("knock"),
      roomVersion: "7",
      servers: ["c.test"],
    });
    const all = await store.ofUser("@bob:b.test");
    assert.deepEqual(all.map((m) => [m.roomId, m.membership, m.eventId]), [
      ["!r:a.test", "leave", "$leave"],
      ["!s:a.test", "knock", "$knock"],
    ]);
    assert.deepEqual(all[0].pdu, pdu("leave"));
    assert.deepEqual(await store.ofUser("@carol:b.test"), []);
    assert.equal(await store.get("@bob:b.test", "!t:a.test"), null);
    const chunks = await Array.fromAsync(kv.list({ prefix: ["userroomid_remotemembershipchunk"] }));
    assert.equal(chunks.length, 0);
    // Past the cap: refused, nothing written.
    await assert.rejects(
      store.record({
        userId: "@bob:b.test",
        roomId: "!r:a.test",
        membership: "invite",
        eventId: "$huge",
        pdu: pdu("invite", { unsigned: { x: "y".repeat(600_000) } }),
        roomVersion: "10",
        servers: [],
      }),
      (e) => e instanceof MatrixError && e.errcode === "M_TOO_LARGE",
    );
    assert.equal((await store.get("@bob:b.test", "!r:a.test"))?.eventId, "$leave");
  } finally {
    kv.close();
  }
});

Deno.test("remote memberships: leaves past 30 days are not listed and go with the next write; the invite cap counts in the commit", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let now = 1_000_000;
    const store = new KvRemoteMembershipStore(kv, () => now);
    const write = (roomId: string, membership: string) =>
      store.record({
        userId: "@bob:b.test",
        roomId,
        membership,
        eventId: `$${membership}${roomId}`,
        pdu: pdu(membership, {
          room_id: roomId,
          unsigned: {
            invite_room_state: [{ type: "m.room.topic", content: { t: "t".repeat(70_000) } }],
          },
        }),
        roomVersion: "10",
        servers: ["a.test"],
      }, { maxOpenInvites: 2, settledRooms: new Set(["!joined:a.test"]) });
    await write("!old:a.test", "leave");
    await write("!a:a.test", "invite");
    await write("!joined:a.test", "invite");
    now += REMOTE_LEAVE_RETENTION_MS + 1;
    // The old leave is no longer listed, though still stored until the next write.
    assert.deepEqual((await store.ofUser("@bob:b.test")).map((m) => m.roomId), [
      "!a:a.test",
      "!joined:a.test",
    ]);
    // Two open invites already (the settled room's does not count): a third is refused.
    await write("!b:a.test", "invite");
    await assert.rejects(write("!c:a.test", "invite"), (e) => {
      assert.ok(e instanceof MatrixError);
      assert.equal(e.errcode, "M_FORBIDDEN");
      assert.equal(e.status, 403);
      return true;
    });
    assert.equal(await store.get("@bob:b.test", "!c:a.test"), null);
    // The write of !b deleted the expired leave and its chunks.
    assert.equal(await store.get("@bob:b.test", "!old:a.test"), null);
    const chunks = await Array.fromAsync(
      kv.list({ prefix: ["userroomid_remotemembershipchunk", "@bob:b.test", "!old:a.test"] }),
    );
    assert.equal(chunks.length, 0);
    // A rejection frees a slot; a leave is never refused by the cap.
    await write("!a:a.test", "leave");
    await write("!c:a.test", "invite");
    assert.equal((await store.get("@bob:b.test", "!c:a.test"))?.membership, "invite");
  } finally {
    kv.close();
  }
});
