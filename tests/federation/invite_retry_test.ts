/**
 * An inbound invite retried by the inviting server (its first PUT timed out on its side) after
 * our user rejected it: answered with our signature again, and the rejection stands.
 */
import assert from "node:assert/strict";
import { startNetwork } from "./in_process_network.ts";
import { createRoom, heldInvite } from "./network_helpers.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

Deno.test("membership: an invite retried after the invitee rejected it does not bring it back", async () => {
  const net = await startNetwork([A, B]);
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", room_version: "10" });
    // A's invite, captured on its way, then delivered by hand (twice).
    const captured = await heldInvite(net, a, alice, roomId, bob.userId);
    const eventId = computeEventId(captured.event as never, roomVersion("10")!);
    const put = () =>
      net.transportFor(A).request({
        method: "PUT",
        destination: B,
        path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(eventId)}`,
        body: captured,
      });
    assert.equal((await put()).status, 200);
    assert.equal((await b.deps.remoteMemberships.get(bob.userId, roomId))?.membership, "invite");

    // Bob rejects it while A cannot be reached: the leave is made locally.
    net.setReachable(A, false);
    const left = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    net.setReachable(A, true);
    const rejected = await b.deps.remoteMemberships.get(bob.userId, roomId);
    assert.equal(rejected?.membership, "leave");

    // A retries the same invite: signed again, but the rejection stands.
    const retried = await put();
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.ok((((retried.body as JsonObject).event as JsonObject).signatures as JsonObject)[B]);
    const after = await b.deps.remoteMemberships.get(bob.userId, roomId);
    assert.equal(after?.membership, "leave");
    assert.equal(after?.eventId, rejected?.eventId);
    const synced = await b.request("GET", "/_matrix/client/v3/sync", { token: bob.accessToken });
    assert.equal(synced.body.rooms?.invite?.[roomId], undefined);
  } finally {
    await net.close();
  }
});
