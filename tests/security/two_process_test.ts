/**
 * Two real server processes over one KV file (several isolates on one database, as on Deno
 * Deploy). What one process decides (a ban, a demotion, a logout) must bind the other at once,
 * and local writes from both must keep the room's DAG linear.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import type { StoredEvent } from "../../domain/ports/event_store.ts";
import {
  type Answer,
  login,
  type Node,
  type ProcessPair,
  register,
  sendText,
  startProcessPair,
  type User,
  withPasswordAuth,
} from "./two_process_support.ts";

/** Writes one racing loop makes at most; each round stops far earlier once the race is over. */
const MAX_RACING_WRITES = 60;
/** Writes a racing loop still makes after the decisive call returned. */
const WRITES_AFTER_DECISION = 4;
/** Users the moderator may kick: one per kick, as only joined users can be kicked. */
const VICTIMS = 40;

const room = (roomId: string) => `/rooms/${encodeURIComponent(roomId)}`;

/** The room's log in order, read straight from the shared KV file. */
async function roomLog(pair: ProcessPair, roomId: string): Promise<StoredEvent[]> {
  const kv = await Deno.openKv(pair.kvPath);
  try {
    const store = new KvEventStore(kv);
    const page = await store.timeline(roomId, { dir: "f", limit: 500 });
    return page.events;
  } finally {
    kv.close();
  }
}

async function forwardExtremities(pair: ProcessPair, roomId: string): Promise<string[]> {
  const kv = await Deno.openKv(pair.kvPath);
  try {
    return (await new KvEventStore(kv).roomHead(roomId))!.forwardExtremities;
  } finally {
    kv.close();
  }
}

function ok(answer: Answer, what: string): Answer {
  assertEquals(answer.status, 200, `${what}: ${JSON.stringify(answer.body)}`);
  return answer;
}

/**
 * Run `write` in two loops on one process while `decide` runs on the other; the loops stop a
 * few writes after `decide` returned (or when `write` has nothing left to write). Returns the
 * answers of writes started after `decide` returned.
 */
async function race(
  write: () => Promise<Answer | undefined>,
  decide: () => Promise<void>,
): Promise<Answer[]> {
  let decided = false;
  const after: Answer[] = [];
  const loop = async () => {
    for (let i = 0; i < MAX_RACING_WRITES && after.length < WRITES_AFTER_DECISION; i++) {
      const startedAfter = decided;
      const answer = await write();
      if (!answer) return;
      if (startedAfter) after.push(answer);
    }
  };
  const writers = [loop(), loop()];
  await decide();
  decided = true;
  await Promise.all(writers);
  return after;
}

async function createPublicRoom(node: Node, creator: User, users: Record<string, number>) {
  const created = ok(
    await node.api("POST", "/createRoom", creator.token, {
      preset: "public_chat",
      power_level_content_override: { users },
    }),
    "createRoom",
  );
  return created.body.room_id as string;
}

Deno.test("two processes on one KV file", async (t) => {
  const pair = await startProcessPair();
  const { a, b } = pair;
  try {
    const alice = await register(a, "alice");

    await t.step("a ban through A refuses sends through B at once", async () => {
      const bob = await register(b, "bob");
      const roomId = await createPublicRoom(a, alice, {});
      for (let round = 0; round < 3; round++) {
        ok(await b.api("POST", `${room(roomId)}/join`, bob.token, {}), "join");
        ok(await sendText(b, bob, roomId, `warm-up ${round}`), "warm-up send");
        const after = await race(
          () => sendText(b, bob, roomId, `racing ${round}`),
          async () => {
            ok(
              await a.api("POST", `${room(roomId)}/ban`, alice.token, { user_id: bob.userId }),
              "ban",
            );
          },
        );
        for (const answer of after) assertEquals(answer.status, 403, JSON.stringify(answer.body));
        const next = await sendText(b, bob, roomId, `after the race ${round}`);
        assertEquals(next.status, 403, JSON.stringify(next.body));
        ok(
          await a.api("POST", `${room(roomId)}/unban`, alice.token, { user_id: bob.userId }),
          "unban",
        );
      }
      // Whatever raced the ban, nothing of bob's may sit after a ban in the log.
      let banned = false;
      for (const event of await roomLog(pair, roomId)) {
        if (event.pdu.type === "m.room.member" && event.pdu.state_key === bob.userId) {
          banned = (event.pdu.content as { membership?: string }).membership === "ban";
        }
        if (event.pdu.type === "m.room.message" && event.pdu.sender === bob.userId) {
          assert(!banned, `bob's message ${event.eventId} was stored after his ban`);
        }
      }
    });

    await t.step("a moderator demoted through A can no longer kick through B", async () => {
      const mod = await register(b, "mod");
      const roomId = await createPublicRoom(a, alice, { [mod.userId]: 50 });
      ok(await b.api("POST", `${room(roomId)}/join`, mod.token, {}), "mod joins");
      // Only a joined user can be kicked, so every kick names a victim of its own.
      const victims: User[] = [];
      for (let i = 0; i < VICTIMS; i++) {
        const victim = await register(b, `victim${i}`);
        ok(await b.api("POST", `${room(roomId)}/join`, victim.token, {}), "victim joins");
        victims.push(victim);
      }
      const kicked = new Set<string>();
      /** Kick the next victim; racing kicks leave the last one for the check after the race. */
      const kick = (keep = 1): Promise<Answer | undefined> => {
        if (victims.length <= keep) return Promise.resolve(undefined);
        const victim = victims.shift()!;
        kicked.add(victim.userId);
        return b.api("POST", `${room(roomId)}/kick`, mod.token, { user_id: victim.userId });
      };
      ok((await kick())!, "kick before the demotion");
      const levels = ok(
        await a.api("GET", `${room(roomId)}/state/m.room.power_levels/`, alice.token),
        "power levels",
      ).body;
      const after = await race(() => kick(), async () => {
        ok(
          await a.api("PUT", `${room(roomId)}/state/m.room.power_levels/`, alice.token, {
            ...levels,
            users: {},
          }),
          "demote",
        );
      });
      for (const answer of after) assertEquals(answer.status, 403, JSON.stringify(answer.body));
      const last = await kick(0);
      assertEquals(last?.status, 403, JSON.stringify(last?.body));
      let demoted = false;
      for (const event of await roomLog(pair, roomId)) {
        if (event.pdu.type === "m.room.power_levels") {
          const users = (event.pdu.content as { users?: Record<string, number> }).users ?? {};
          demoted = users[mod.userId] === undefined;
        }
        if (event.pdu.type === "m.room.member" && event.pdu.sender === mod.userId) {
          const membership = (event.pdu.content as { membership?: string }).membership;
          if (kicked.has(event.pdu.state_key!) && membership === "leave") {
            assert(!demoted, `kick ${event.eventId} was stored after the demotion`);
          }
        }
      }
    });

    await t.step("a token revoked through A stops working on B at once", async () => {
      const password = "pw-carol-two-process";
      const carol = await register(a, "carol", password);
      const whoami = (node: Node, user: User) => node.api("GET", "/account/whoami", user.token);
      /** Use the token on B (so B has resolved it), revoke it on A, ask B again. */
      const revokedOnB = async (user: User, revoke: () => Promise<void>, what: string) => {
        ok(await whoami(b, user), `${what}: before`);
        await revoke();
        const answer = await whoami(b, user);
        assertEquals(answer.status, 401, `${what}: ${JSON.stringify(answer.body)}`);
        assertEquals(answer.body.errcode, "M_UNKNOWN_TOKEN");
      };

      const loggedOut = await login(a, "carol", password);
      await revokedOnB(loggedOut, async () => {
        ok(await a.api("POST", "/logout", loggedOut.token, {}), "logout");
      }, "logout");

      const deleted = await login(a, "carol", password);
      await revokedOnB(deleted, async () => {
        ok(
          await withPasswordAuth(a, "DELETE", `/devices/${deleted.deviceId}`, carol, password, {}),
          "delete device",
        );
      }, "device deletion");

      const other = await login(a, "carol", password);
      await revokedOnB(other, async () => {
        ok(
          await withPasswordAuth(a, "POST", "/account/password", carol, password, {
            new_password: password,
            logout_devices: true,
          }),
          "password change",
        );
      }, "password change with logout_devices");
      ok(await whoami(b, carol), "the device that changed the password stays logged in");

      await revokedOnB(carol, async () => {
        ok(
          await withPasswordAuth(a, "POST", "/account/deactivate", carol, password, {}),
          "deactivate",
        );
      }, "deactivation");
    });

    await t.step("local writes through both processes keep the room linear", async () => {
      const dave = await register(b, "dave");
      const roomId = await createPublicRoom(a, alice, {});
      ok(await b.api("POST", `${room(roomId)}/join`, dave.token, {}), "join");
      const burst = (node: Node, user: User, name: string) =>
        Promise.all(
          [0, 1, 2].map(async (stream) => {
            for (let i = 0; i < 8; i++) {
              ok(await sendText(node, user, roomId, `${name} ${stream}.${i}`), "send");
            }
          }),
        );
      await Promise.all([burst(a, alice, "alice"), burst(b, dave, "dave")]);
      const log = await roomLog(pair, roomId);
      assertEquals(log.filter((e) => e.pdu.type === "m.room.message").length, 48);
      for (let i = 1; i < log.length; i++) {
        assertEquals(log[i].pdu.prev_events, [log[i - 1].eventId], `event ${i} forks`);
      }
      assertEquals(await forwardExtremities(pair, roomId), [log[log.length - 1].eventId]);
    });
  } catch (error) {
    console.error("process A said:\n" + a.output() + "\nprocess B said:\n" + b.output());
    throw error;
  } finally {
    await pair.stop();
  }
});
