// deno-lint-ignore-file no-explicit-any
/**
 * `GET /sync?set_presence=...` over HTTP, as SyTest's "Presence can be set from sync" does it:
 * the syncing user's presence changes and users sharing a room see it in their own /sync,
 * initial and incremental (woken from a long-poll); users sharing no room never do.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

Deno.test("sync set_presence: room-mates see the new presence, with last_active_ago; outsiders never do", async () => {
  const server = await startTestServer();
  try {
    const sender = await registerUser(server, "sender");
    const receiver = await registerUser(server, "receiver");
    const outsider = await registerUser(server, "outsider");
    // SyTest's users poll the legacy event stream once at registration (online from then on).
    const events = await server.request("GET", `/_matrix/client/r0/events?timeout=0`, {
      token: sender.accessToken,
    });
    assertEquals(events.status, 200);
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: sender.accessToken,
      body: { preset: "public_chat" },
    });
    const room = encodeURIComponent(created.body.room_id);
    const joined = await server.request("POST", `${V3}/rooms/${room}/join`, {
      token: receiver.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const sync = (token: string, query = "") =>
      server.request("GET", `${V3}/sync?${query}`, { token });
    const presenceOf = (body: any) =>
      (body.presence?.events ?? []).find((e: any) => e.sender === sender.userId);

    const first = await sync(receiver.accessToken, "set_presence=offline");
    assertEquals(presenceOf(first.body)?.content.presence, "online");
    // The receiver long-polls; the sender's sync sets unavailable and wakes it.
    const waiting = sync(
      receiver.accessToken,
      `set_presence=offline&timeout=10000&since=${first.body.next_batch}`,
    );
    const set = await sync(sender.accessToken, "set_presence=unavailable&timeout=0");
    assertEquals(set.status, 200);
    const woken = presenceOf((await waiting).body);
    assertEquals(woken?.type, "m.presence");
    assertEquals(woken?.content.presence, "unavailable");
    assert(typeof woken?.content.last_active_ago === "number", "last_active_ago");
    // An initial sync shows it too, and the status endpoint agrees.
    assertEquals(
      presenceOf((await sync(receiver.accessToken, "set_presence=offline")).body)?.content.presence,
      "unavailable",
    );
    const status = await server.request("GET", `${V3}/presence/${sender.userId}/status`, {
      token: receiver.accessToken,
    });
    assertEquals(status.body.presence, "unavailable");
    // set_presence=offline leaves it alone; a sync without set_presence means online.
    await sync(sender.accessToken, "set_presence=offline&timeout=0");
    assertEquals(
      presenceOf((await sync(receiver.accessToken, "set_presence=offline")).body)?.content.presence,
      "unavailable",
    );
    await sync(sender.accessToken, "timeout=0");
    assertEquals(
      presenceOf((await sync(receiver.accessToken, "set_presence=offline")).body)?.content.presence,
      "online",
    );

    // Sharing no room, the outsider sees none of it.
    assertEquals(
      presenceOf((await sync(outsider.accessToken, "set_presence=offline")).body),
      undefined,
    );
  } finally {
    server.close();
  }
});
