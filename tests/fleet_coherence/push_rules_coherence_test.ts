/**
 * Push rules and notification audiences across two servers on one KV: an event sent through A
 * is evaluated with the rules as KV holds them when it is sent, though A evaluated (and kept)
 * the recipient's ruleset a moment before and the change was made through B; and a member who
 * joined through B is notified of A's next event, though A kept the room's audience.
 */
import { assertEquals } from "../assert.ts";
import {
  createPublicRoom,
  joinRoom,
  type RegisteredUser,
  registerUser,
  sendText,
} from "../routes/client_harness.ts";
import { type SharedKvServer, startSharedKvServers, V3 } from "./shared_kv_servers.ts";

/** Send a message through `server`: its event ID. */
async function send(server: SharedKvServer, user: RegisteredUser, roomId: string, body: string) {
  const res = await sendText(server, user, roomId, body);
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

/** The event IDs `user`'s /notifications lists, newest first. */
async function notified(server: SharedKvServer, user: RegisteredUser): Promise<string[]> {
  const res = await server.request("GET", `${V3}/notifications`, { token: user.accessToken });
  assertEquals(res.status, 200);
  return res.body.notifications.map((n: { event: { event_id: string } }) => n.event.event_id);
}

Deno.test("coherence: a push rule set through B binds A's very next event", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice");
    const bob = await registerUser(a, "bob");
    const roomId = await createPublicRoom(a, alice);
    await joinRoom(a, bob, roomId);

    // A evaluates alice's rules for bob's message (and keeps what it derived from them).
    const first = await send(a, bob, roomId, "one");
    assertEquals(await notified(a, alice), [first]);

    // Alice mutes the room through B: a room rule with no actions.
    const rule = `${V3}/pushrules/global/room/${encodeURIComponent(roomId)}`;
    const put = await b.request("PUT", rule, { token: alice.accessToken, body: { actions: [] } });
    assertEquals(put.status, 200);
    const muted = await send(a, bob, roomId, "two");
    assertEquals(await notified(a, alice), [first], `muted message ${muted} notified`);
    // A's read of the ruleset shows the rule too.
    const shown = await a.request("GET", rule, { token: alice.accessToken });
    assertEquals(shown.status, 200);
    assertEquals(shown.body.actions, []);

    // Unmuted through B again: A's next event notifies.
    assertEquals((await b.request("DELETE", rule, { token: alice.accessToken })).status, 200);
    const third = await send(a, bob, roomId, "three");
    assertEquals(await notified(a, alice), [third, first]);

    // Disabling a default rule (one-to-one rooms) through B: A's next event is silent again.
    const oneToOne = `${V3}/pushrules/global/underride/.m.rule.room_one_to_one/enabled`;
    const disabled = await b.request("PUT", oneToOne, {
      token: alice.accessToken,
      body: { enabled: false },
    });
    assertEquals(disabled.status, 200);
    const message = `${V3}/pushrules/global/underride/.m.rule.message/enabled`;
    assertEquals(
      (await b.request("PUT", message, { token: alice.accessToken, body: { enabled: false } }))
        .status,
      200,
    );
    await send(a, bob, roomId, "four");
    assertEquals(await notified(a, alice), [third, first]);
  } finally {
    close();
  }
});

Deno.test("coherence: a member who joined through B is notified of A's next event", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice");
    const bob = await registerUser(a, "bob");
    const carol = await registerUser(a, "carol");
    const roomId = await createPublicRoom(a, alice);
    await joinRoom(a, bob, roomId);
    // A plans notifications for the room (and keeps its audience: alice and bob).
    const first = await send(a, bob, roomId, "before carol");
    assertEquals(await notified(a, alice), [first]);

    await joinRoom(b, carol, roomId);
    const second = await send(a, bob, roomId, "after carol");
    assertEquals(await notified(a, carol), [second]);
    assertEquals(await notified(a, alice), [second, first]);

    // Carol leaves through B: A's next event no longer notifies her.
    const left = await b.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/leave`, {
      token: carol.accessToken,
      body: {},
    });
    assertEquals(left.status, 200);
    await send(a, bob, roomId, "after carol left");
    assertEquals(await notified(a, carol), [second]);
  } finally {
    close();
  }
});
