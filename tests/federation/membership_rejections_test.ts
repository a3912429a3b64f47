/**
 * The membership handshakes as SyTest plays them against us (tests/50federation/30room-join.pl
 * and 35room-invite.pl), over two in-process servers with B's side played by hand: an invite
 * rejected through make_leave/send_leave v1 in a v1 room, and, in v6 rooms, events that are
 * properly hashed and signed but hold what canonical JSON forbids (a float, an integer past
 * 2^53) refused with 400 M_BAD_JSON by send_join, invite and send_leave, writing nothing.
 */
import assert from "node:assert/strict";
import type { Network } from "./in_process_network.ts";
import { createRoom, heldInvite, memberOn, withNetwork } from "./network_helpers.ts";
import {
  checkMembershipTemplate,
  type HandshakeMembership,
  signFromTemplate,
} from "../../domain/federation/membership_template.ts";
import { signEvent } from "../../domain/protocol/event_signing.ts";
import { computeEventId } from "../../domain/protocol/event_ids.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { computeContentHash } from "../../domain/protocol/hashing.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { SigningKey } from "../../domain/protocol/signing.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;
const V6 = roomVersion("6")!;
/** Canonical JSON as room versions 1-5 have it: floats and big integers encoded, not refused. */
const LENIENT = roomVersion("5")!;

/** A request from `origin` to A, signed with X-Matrix by the network. */
function toA(net: Network, origin: string, method: "GET" | "PUT", path: string, body?: JsonValue) {
  return net.transportFor(origin).request({ method, destination: A, path, body });
}

/** make_<membership> on A as B for `userId`, and the event built and signed by B from it. */
async function makeAndSign(
  net: Network,
  roomId: string,
  userId: string,
  membership: HandshakeMembership,
  ver = "",
) {
  const made = await toA(
    net,
    B,
    "GET",
    `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(userId)}${ver}`,
  );
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const { version, template } = checkMembershipTemplate(A, made.body, {
    roomId,
    userId,
    membership,
  });
  return await signFromTemplate({
    version,
    template,
    serverName: B,
    signingKey: net.servers[B].deps.keyring.current,
    originServerTs: Date.now(),
  });
}

/**
 * `pdu` with `change` applied, then hashed and signed by `server` as SyTest's Perl does it: its
 * canonical JSON writes a float as it is, so the event is valid in everything but that.
 */
async function tampered(
  pdu: JsonObject,
  change: (pdu: JsonObject) => JsonObject,
  server: string,
  key: SigningKey,
): Promise<{ pdu: JsonObject; eventId: string }> {
  const changed = change(structuredClone(pdu));
  delete changed.signatures;
  const hashed = { ...changed, hashes: { sha256: computeContentHash(changed, LENIENT) } };
  const signed = await signEvent({ ...hashed, signatures: {} } as unknown as Pdu, V6, server, key);
  return { pdu: signed as unknown as JsonObject, eventId: computeEventId(signed, V6) };
}

const isBadJson = (res: { status: number; body: JsonValue | null }) =>
  res.status === 400 && (res.body as JsonObject).errcode === "M_BAD_JSON";

Deno.test("membership: an invite is rejected through make_leave and send_leave v1 (v1 room)", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", room_version: "1" });
    const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    const since = (await a.request("GET", "/_matrix/client/v3/sync", {
      token: alice.accessToken,
    })).body.next_batch as string;

    // B's side by hand: make_leave without `ver` (a leave takes the room's version as it is).
    const leave = await makeAndSign(net, roomId, bob.userId, "leave");
    assert.equal(leave.pdu.content.membership, "leave");
    const sent = await toA(
      net,
      B,
      "PUT",
      `/_matrix/federation/v1/send_leave/${enc(roomId)}/${enc(leave.eventId)}`,
      leave.pdu as unknown as JsonObject,
    );
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    assert.deepEqual(sent.body, [200, {}]);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "leave");
    // The inviter sees the rejection in her timeline.
    const next = await a.request(
      "GET",
      `/_matrix/client/v3/sync?since=${enc(since)}&timeout=0`,
      { token: alice.accessToken },
    );
    const timeline = next.body.rooms.join[roomId].timeline.events as JsonObject[];
    const rejection = timeline.find((e) => e.event_id === leave.eventId);
    assert.ok(rejection, JSON.stringify(timeline));
    assert.equal((rejection.content as JsonObject).membership, "leave");
    assert.equal(rejection.sender, bob.userId);
  });
});

Deno.test("membership: v6 send_join and send_leave refuse signed events with non-canonical JSON", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const key = b.deps.keyring.current;
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "6" });
    const head = await a.deps.eventStore.roomHead(roomId);

    const join = await makeAndSign(net, roomId, bob.userId, "join", "?ver=6");
    const joinPath = (id: string) => `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`;
    const base = join.pdu as unknown as JsonObject;
    for (const bad of [1.1, 2 ** 60]) {
      const { pdu, eventId } = await tampered(
        base,
        (p) => {
          (p.content as JsonObject).bad_val = bad;
          return p;
        },
        B,
        key,
      );
      const res = await toA(net, B, "PUT", joinPath(eventId), pdu);
      assert.ok(isBadJson(res), `${bad}: ${res.status} ${JSON.stringify(res.body)}`);
      // v1 answers the same.
      const v1 = await toA(
        net,
        B,
        "PUT",
        `/_matrix/federation/v1/send_join/${enc(roomId)}/${enc(eventId)}`,
        pdu,
      );
      assert.ok(isBadJson(v1), `${bad}: ${v1.status} ${JSON.stringify(v1.body)}`);
    }
    assert.equal(await memberOn(a, alice, roomId, bob.userId), undefined);
    assert.equal((await a.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);

    // Invited, then a rejection with a float where SyTest puts it (a top-level `contents`,
    // which redaction drops, so only the content hash covers it), under a made-up event ID:
    // the body is judged first.
    const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    const invitedAt = (await a.deps.eventStore.roomHead(roomId))!.lastPosition;
    const leave = await makeAndSign(net, roomId, bob.userId, "leave");
    const { pdu: badLeave } = await tampered(
      leave.pdu as unknown as JsonObject,
      (p) => ({ ...p, contents: { bad_val: 1.1 } }),
      B,
      key,
    );
    const refused = await toA(
      net,
      B,
      "PUT",
      `/_matrix/federation/v2/send_leave/${enc(roomId)}/xxx`,
      badLeave,
    );
    assert.ok(isBadJson(refused), `${refused.status} ${JSON.stringify(refused.body)}`);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "invite");
    assert.equal((await a.deps.eventStore.roomHead(roomId))!.lastPosition, invitedAt);

    // The same events, hashed and signed the same way without the bad values, are taken.
    const goodLeave = await tampered(leave.pdu as unknown as JsonObject, (p) => p, B, key);
    const ok = await toA(
      net,
      B,
      "PUT",
      `/_matrix/federation/v2/send_leave/${enc(roomId)}/${enc(goodLeave.eventId)}`,
      goodLeave.pdu,
    );
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "leave");
    // (A fresh template: the first one's join, built before the leave, would lose to it.)
    const rejoin = await makeAndSign(net, roomId, bob.userId, "join", "?ver=6");
    const goodJoin = await tampered(rejoin.pdu as unknown as JsonObject, (p) => p, B, key);
    const joined = await toA(net, B, "PUT", joinPath(goodJoin.eventId), goodJoin.pdu);
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "join");
  });
});

Deno.test("membership: a v6 invite holding a float is refused with M_BAD_JSON and not shown", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", room_version: "6" });
    // A builds the invite; the network holds it back, and A's side replays it by hand.
    const captured = await heldInvite(net, a, alice, roomId, bob.userId);
    const event = captured.event as JsonObject;
    const { pdu, eventId } = await tampered(
      event,
      (p) => {
        (p.content as JsonObject).bad_val = 1.1;
        return p;
      },
      A,
      a.deps.keyring.current,
    );
    const res = await net.transportFor(A).request({
      method: "PUT",
      destination: B,
      path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(eventId)}`,
      body: { ...captured, event: pdu },
    });
    assert.ok(isBadJson(res), `${res.status} ${JSON.stringify(res.body)}`);
    assert.deepEqual(await b.deps.remoteMemberships.ofUser(bob.userId), []);
    const synced = await b.request("GET", "/_matrix/client/v3/sync", { token: bob.accessToken });
    assert.equal(synced.body.rooms.invite[roomId], undefined);
    // Hashed and signed the same way without the float, it is taken and shown.
    const good = await tampered(event, (p) => p, A, a.deps.keyring.current);
    const taken = await net.transportFor(A).request({
      method: "PUT",
      destination: B,
      path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(good.eventId)}`,
      body: { ...captured, event: good.pdu },
    });
    assert.equal(taken.status, 200, JSON.stringify(taken.body));
    const after = await b.request("GET", "/_matrix/client/v3/sync", { token: bob.accessToken });
    assert.ok(after.body.rooms.invite[roomId]);
  });
});

Deno.test("membership: an invite into a room we hold answers to its server ACL first; a made-up invitee is signed for, not stored", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    // B holds the room; A's alice joins it over federation.
    const roomId = await createRoom(b, bob, { preset: "public_chat", room_version: "10" });
    const joined = await a.request("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${B}`, {
      token: alice.accessToken,
      body: {},
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    const inviteGhost = (localpart: string) =>
      a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        token: alice.accessToken,
        body: { user_id: `@${localpart}:${B}` },
      });
    // No such user on B: B signs the invite, as Synapse does, and stores nothing.
    const allowed = await inviteGhost("ghost");
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
    assert.deepEqual(await b.deps.remoteMemberships.ofUser(`@ghost:${B}`), []);

    const acl = await b.request(
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.server_acl`,
      { token: bob.accessToken, body: { allow: ["*"], deny: [A] } },
    );
    assert.equal(acl.status, 200, JSON.stringify(acl.body));
    // Now A is refused by the ACL, whoever it invites.
    const banned = await inviteGhost("phantom");
    assert.equal(banned.status, 403, JSON.stringify(banned.body));
    assert.equal(banned.body.errcode, "M_FORBIDDEN");
    const answers = net.log.filter((r) => r.path.startsWith("/_matrix/federation/v2/invite/"));
    assert.equal(answers.length, 2);
  });
});
