/**
 * Long-polls and the end of a process: Deno Deploy stops an instance with SIGINT and kills it
 * 5 s later, so a shutdown (AppDeps.shutdown) must answer waiting /sync and /events at once,
 * with the position they had; and TESSERA_LONG_POLL_MAX_MS cuts a client's long timeout. The
 * long-polls ask for 60 s; a test-level guard far below that reports one left waiting.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { guardWithin } from "../guard.ts";
import { TIMELINE_ONLY } from "./long_polls.ts";

const V3 = "/_matrix/client/v3";
/** Far longer than an answer takes, far shorter than the 60 s the long-polls ask for. */
const guarded = guardWithin(20_000);

/** Resolves once the server has a long-poll registered with its notifier. */
async function waiting(server: { deps: { syncNotifier: { watching: number } } }): Promise<void> {
  while (server.deps.syncNotifier.watching === 0) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("a shutdown answers a waiting /sync at once, empty, at a position that still works", async () => {
  const shutdown = new AbortController();
  const server = await startTestServer({}, { shutdown: shutdown.signal });
  try {
    const alice = await registerUser(server, "alice");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(created.status, 200);
    const first = await server.request("GET", `${V3}/sync?filter=${TIMELINE_ONLY}`, {
      token: alice.accessToken,
    });
    const since: string = first.body.next_batch;
    const poll = server.request(
      "GET",
      `${V3}/sync?since=${since}&timeout=60000&filter=${TIMELINE_ONLY}`,
      { token: alice.accessToken },
    );
    await waiting(server);
    shutdown.abort();
    const res = await guarded(poll, "/sync after shutdown");
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body.rooms?.join ?? {}, {});
    assert(typeof res.body.next_batch === "string" && res.body.next_batch >= since);
    // A message sent meanwhile is there for the next sync (on another instance, say).
    const sent = await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(created.body.room_id)}/send/m.room.message/t1`,
      { token: alice.accessToken, body: { msgtype: "m.text", body: "after" } },
    );
    assertEquals(sent.status, 200);
    // Once shutting down, a long-poll does not start waiting either: it answers with the news.
    const next = await guarded(
      server.request(
        "GET",
        `${V3}/sync?since=${res.body.next_batch}&timeout=60000&filter=${TIMELINE_ONLY}`,
        { token: alice.accessToken },
      ),
      "/sync started after shutdown",
    );
    const timeline = next.body.rooms.join[created.body.room_id].timeline.events;
    assertEquals(timeline.map((e: { event_id: string }) => e.event_id), [sent.body.event_id]);
  } finally {
    server.close();
  }
});

Deno.test("a shutdown answers a waiting /events at once with an empty chunk", async () => {
  const shutdown = new AbortController();
  const server = await startTestServer({}, { shutdown: shutdown.signal });
  try {
    const alice = await registerUser(server, "alice");
    const first = await server.request("GET", `${V3}/events?timeout=0`, {
      token: alice.accessToken,
    });
    const from: string = first.body.end;
    const poll = server.request("GET", `${V3}/events?from=${from}&timeout=60000`, {
      token: alice.accessToken,
    });
    await waiting(server);
    shutdown.abort();
    const res = await guarded(poll, "/events after shutdown");
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body.chunk, []);
    assertEquals(res.body.start, from);
  } finally {
    server.close();
  }
});

Deno.test("TESSERA_LONG_POLL_MAX_MS cuts a client's 60 s long-poll", async () => {
  const server = await startTestServer({ TESSERA_LONG_POLL_MAX_MS: "1000" });
  try {
    const alice = await registerUser(server, "alice");
    const first = await server.request("GET", `${V3}/sync?filter=${TIMELINE_ONLY}`, {
      token: alice.accessToken,
    });
    const res = await guarded(
      server.request(
        "GET",
        `${V3}/sync?since=${first.body.next_batch}&timeout=60000&filter=${TIMELINE_ONLY}`,
        { token: alice.accessToken },
      ),
      "/sync with a 1 s cap",
    );
    assertEquals(res.status, 200);
    assertEquals(res.body.rooms?.join ?? {}, {});
    const events = await guarded(
      server.request("GET", `${V3}/events?from=${first.body.next_batch}&timeout=60000`, {
        token: alice.accessToken,
      }),
      "/events with a 1 s cap",
    );
    assertEquals(events.status, 200);
    assertEquals(events.body.chunk, []);
  } finally {
    server.close();
  }
});
