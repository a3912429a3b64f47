/**
 * An invite of a remote user waits for the invitee's server to sign it outside the room's send
 * queue: while that server is slow, other sends to the room complete; the invite then lands
 * with its signature (forking the DAG for one event, merged by the next send), and an invite a
 * ban made meanwhile disallows is refused on the new state and writes nothing.
 */
import assert from "node:assert/strict";
import { type Network, type NetworkServer, startNetwork } from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

/** Hold every invite sent to B until `release` is called; `reached` resolves when one is held. */
function holdInvites(net: Network): { reached: Promise<void>; release: () => void } {
  let reachedResolve!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (reachedResolve = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  net.intercept(async (request): Promise<"deliver"> => {
    if (request.destination !== B || !request.path.includes("/invite/")) return "deliver";
    reachedResolve();
    await gate;
    return "deliver";
  });
  return { reached, release };
}

async function setup(net: Network) {
  const a = net.servers[A];
  const alice = await a.register("alice");
  const carol = await a.register("carol");
  const bob = await net.servers[B].register("bob");
  const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const roomId = created.body.room_id as string;
  const joined = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {
    token: carol.accessToken,
    body: {},
  });
  assert.equal(joined.status, 200, JSON.stringify(joined.body));
  return { a, alice, carol, bob, roomId };
}

function invite(a: NetworkServer, alice: RegisteredUser, roomId: string, userId: string) {
  return a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
    token: alice.accessToken,
    body: { user_id: userId },
  });
}

let txn = 0;
function message(a: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  return a.request(
    "PUT",
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t${++txn}`,
    { token: user.accessToken, body: { msgtype: "m.text", body } },
  );
}

Deno.test("invite outside the queue: sends complete while the invitee's server is slow", async () => {
  const net = await startNetwork([A, B]);
  try {
    const { a, alice, carol, bob, roomId } = await setup(net);
    const held = holdInvites(net);
    const inviting = invite(a, alice, roomId, bob.userId);
    await held.reached;
    // The invitee's server has not answered: these sends must not wait for it.
    for (const body of ["one", "two", "three"]) {
      const sent = await message(a, carol, roomId, body);
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
    }
    const meanwhile = await message(a, alice, roomId, "from the inviter too");
    assert.equal(meanwhile.status, 200, JSON.stringify(meanwhile.body));
    held.release();
    const invited = await inviting;
    assert.equal(invited.status, 200, JSON.stringify(invited.body));

    // Stored with B's verified signature, as current state.
    const store = a.deps.eventStore;
    const inviteId = await store.currentStateEventId(roomId, "m.room.member", bob.userId);
    const stored = await store.getEvent(inviteId!);
    assert.equal(stored!.pdu.content.membership, "invite");
    assert.equal(stored!.status, "accepted");
    assert.ok(stored!.pdu.signatures[A] && stored!.pdu.signatures[B]);
    // Built before the messages, it forked the DAG; the next send cites both tips.
    assert.equal((await store.roomHead(roomId))!.forwardExtremities.length, 2);
    const after = await message(a, carol, roomId, "after");
    assert.equal(after.status, 200, JSON.stringify(after.body));
    const merged = await store.getEvent(after.body.event_id);
    assert.equal(merged!.pdu.prev_events.length, 2);
    assert.ok((merged!.pdu.prev_events as string[]).includes(inviteId!));
    assert.deepEqual((await store.roomHead(roomId))!.forwardExtremities, [after.body.event_id]);
  } finally {
    await net.close();
  }
});

Deno.test("invite outside the queue: a ban committed while it waited refuses it, writing nothing", async () => {
  const net = await startNetwork([A, B]);
  try {
    const { a, alice, bob, roomId } = await setup(net);
    const held = holdInvites(net);
    const inviting = invite(a, alice, roomId, bob.userId);
    await held.reached;
    const banned = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(banned.status, 200, JSON.stringify(banned.body));
    const headAfterBan = await a.deps.eventStore.roomHead(roomId);
    held.release();
    const invited = await inviting;
    assert.equal(invited.status, 403, JSON.stringify(invited.body));
    assert.equal(invited.body.errcode, "M_FORBIDDEN");
    // Nothing written: the head is the ban's, and bob stays banned.
    const head = await a.deps.eventStore.roomHead(roomId);
    assert.equal(head!.versionstamp, headAfterBan!.versionstamp);
    const memberId = await a.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.member",
      bob.userId,
    );
    assert.equal((await a.deps.eventStore.getEvent(memberId!))!.pdu.content.membership, "ban");
  } finally {
    await net.close();
  }
});
