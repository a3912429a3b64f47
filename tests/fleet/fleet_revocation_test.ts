/**
 * Revocations in a fleet (issue 12): three real processes on one KV file. A logout, an account
 * deactivation and a room ban done through one process take effect on the others on the very
 * next request there (whoami, /sync, a send, a rejoin, the banned member's next sync), though
 * those processes had just served the same token or room (so any per-process cache of sessions
 * or room state was warm).
 */
import { assert, assertEquals } from "../assert.ts";
import {
  createPublicRoom,
  joinRoom,
  loginUser,
  passwordAuth,
  registerUser,
  sendText,
} from "../routes/client_harness.ts";
import { type FleetProcess, startFleet } from "./fleet_harness.ts";

const V3 = "/_matrix/client/v3";
const enc = encodeURIComponent;

/** The status and errcode of `whoami` with `token` on process `p`. */
async function whoami(p: FleetProcess, token: string): Promise<[number, string | undefined]> {
  const res = await p.request("GET", `${V3}/account/whoami`, { token });
  return [res.status, res.body?.errcode];
}

/** A /sync on `p` that does not wait (from `since` when given). */
function syncNow(p: FleetProcess, token: string, since?: string) {
  const from = since === undefined ? "" : `&since=${enc(since)}`;
  return p.request("GET", `${V3}/sync?timeout=0${from}`, { token });
}

Deno.test("fleet: logout, deactivation and a ban through one process hold on the others at once", async (t) => {
  const fleet = await startFleet(3);
  let failed = true;
  try {
    const [a, b, c] = fleet.processes;
    const passed: boolean[] = [];

    passed.push(
      await t.step("a token logged out through A is refused by B and C", async () => {
        const alice = await registerUser(a, "alice", "pw-alice");
        const second = await loginUser(c, "alice", "pw-alice");
        for (const p of [b, c]) assertEquals(await whoami(p, alice.accessToken), [200, undefined]);
        for (const p of [a, b]) assertEquals(await whoami(p, second.accessToken), [200, undefined]);

        const out = await a.request("POST", `${V3}/logout`, { token: alice.accessToken, body: {} });
        assertEquals(out.status, 200);
        for (const p of [b, c]) {
          assertEquals(
            await whoami(p, alice.accessToken),
            [401, "M_UNKNOWN_TOKEN"],
            `on ${p.index}`,
          );
        }
        for (const p of [b, c]) {
          const sync = await syncNow(p, alice.accessToken);
          assertEquals(
            [sync.status, sync.body?.errcode],
            [401, "M_UNKNOWN_TOKEN"],
            `sync on ${p.index}`,
          );
        }
        // Only that device's token: the other session still works everywhere.
        for (const p of [b, c]) assertEquals(await whoami(p, second.accessToken), [200, undefined]);

        // logout/all through B: the remaining session is refused on A and C.
        const all = await b.request("POST", `${V3}/logout/all`, {
          token: second.accessToken,
          body: {},
        });
        assertEquals(all.status, 200);
        for (const p of [a, c]) {
          assertEquals(
            await whoami(p, second.accessToken),
            [401, "M_UNKNOWN_TOKEN"],
            `on ${p.index}`,
          );
        }
      }),
    );

    passed.push(
      await t.step("an account deactivated through A is refused by B and C", async () => {
        const bob = await registerUser(a, "bob", "pw-bob");
        const onC = await loginUser(c, "bob", "pw-bob");
        for (const p of [b, c]) {
          assertEquals(await whoami(p, bob.accessToken), [200, undefined]);
          assertEquals(await whoami(p, onC.accessToken), [200, undefined]);
        }
        const challenge = await a.request("POST", `${V3}/account/deactivate`, {
          token: bob.accessToken,
          body: {},
        });
        assertEquals(challenge.status, 401);
        const done = await a.request("POST", `${V3}/account/deactivate`, {
          token: bob.accessToken,
          body: { auth: passwordAuth("bob", "pw-bob", challenge.body.session) },
        });
        assertEquals(done.status, 200, JSON.stringify(done.body));
        const login = (p: FleetProcess) =>
          p.request("POST", `${V3}/login`, { body: passwordAuth("bob", "pw-bob") });
        for (const p of [b, c]) {
          for (const token of [bob.accessToken, onC.accessToken]) {
            assertEquals((await whoami(p, token))[0], 401, `a deactivated token on ${p.index}`);
          }
          const refused = await login(p);
          assertEquals(refused.status, 403, `login on ${p.index}: ${JSON.stringify(refused.body)}`);
        }
        // And the same answer as the process that deactivated him gives.
        const onA = await login(a);
        assertEquals(onA.status, 403);
        for (const p of [b, c]) assertEquals((await login(p)).body.errcode, onA.body.errcode);
      }),
    );

    passed.push(
      await t.step("a member banned through A can no longer send through B or C", async () => {
        const carol = await registerUser(a, "carol");
        const dave = await registerUser(b, "dave");
        const roomId = await createPublicRoom(a, carol);
        await joinRoom(b, dave, roomId);
        const send = (p: FleetProcess, body: string) => sendText(p, dave, roomId, body);
        // Dave sends through B and C first: their views of the room have him joined.
        for (const p of [b, c]) assertEquals((await send(p, `before, via ${p.index}`)).status, 200);
        const before = await syncNow(c, dave.accessToken);
        assertEquals(before.status, 200);
        assert(before.body.rooms?.join?.[roomId], "dave's sync on C lists the room as joined");

        const ban = await a.request("POST", `${V3}/rooms/${enc(roomId)}/ban`, {
          token: carol.accessToken,
          body: { user_id: dave.userId, reason: "fleet test" },
        });
        assertEquals(ban.status, 200, JSON.stringify(ban.body));
        for (const p of [b, c]) {
          const refused = await send(p, `after, via ${p.index}`);
          assertEquals(refused.status, 403, `send on ${p.index}: ${JSON.stringify(refused.body)}`);
          assertEquals(refused.body.errcode, "M_FORBIDDEN");
          const member = await p.request(
            "GET",
            `${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(dave.userId)}`,
            { token: carol.accessToken },
          );
          assertEquals(member.status, 200);
          assertEquals(member.body.membership, "ban", `membership as process ${p.index} sees it`);
          const rejoin = await p.request("POST", `${V3}/join/${enc(roomId)}`, {
            token: dave.accessToken,
            body: {},
          });
          assertEquals(rejoin.status, 403, `rejoin on ${p.index}: ${JSON.stringify(rejoin.body)}`);
        }
        // Dave's next sync on C moves the room to `leave`, ending with his ban.
        const after = await syncNow(c, dave.accessToken, before.body.next_batch);
        assertEquals(after.status, 200);
        const left = after.body.rooms?.leave?.[roomId];
        assert(left, `the room is not under leave: ${JSON.stringify(after.body.rooms)}`);
        const last = left.timeline.events[left.timeline.events.length - 1];
        assertEquals([last.type, last.state_key, last.content.membership], [
          "m.room.member",
          dave.userId,
          "ban",
        ]);
      }),
    );
    failed = passed.includes(false);
  } finally {
    if (failed) console.error(fleet.output().slice(-20_000));
    await fleet.stop();
  }
});
