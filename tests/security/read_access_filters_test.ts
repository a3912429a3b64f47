/**
 * Read access after the pipeline's later stages (issue 8): ignored users (finding 7) and
 * redacted content (finding 20). Marker strings that must not appear are checked over whole
 * response bodies, each next to a control showing the same route does return the marker to a
 * reader entitled to it, so no assertion passes vacuously.
 */
import { assert } from "../assert.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { type JsonResponse, startTestServer } from "../routes/test_server.ts";
import { checkMarkers, V3, type Verdict } from "./read_access_support.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** A small client over one server: requests that must succeed, and the routes the tests read. */
function client(server: Server) {
  let txn = 0;
  const ok = async (method: string, path: string, user: RegisteredUser, body?: unknown) => {
    const res = await server.request(method, path, { token: user.accessToken, body });
    assert(res.status === 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const roomPath = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;
  return {
    ok,
    roomPath,
    get: (path: string, user: RegisteredUser): Promise<JsonResponse> =>
      server.request("GET", path, { token: user.accessToken }),
    createRoom: async (user: RegisteredUser, body: Record<string, unknown>) =>
      (await ok("POST", `${V3}/createRoom`, user, body)).room_id as string,
    join: (user: RegisteredUser, roomId: string) =>
      ok("POST", `${V3}/join/${encodeURIComponent(roomId)}`, user, {}),
    say: async (user: RegisteredUser, roomId: string, body: string) =>
      (await ok("PUT", `${roomPath(roomId)}/send/m.room.message/t${++txn}`, user, {
        msgtype: "m.text",
        body,
      })).event_id as string,
    setState: async (
      user: RegisteredUser,
      roomId: string,
      type: string,
      key: string,
      content: Record<string, unknown>,
    ) =>
      (await ok(
        "PUT",
        `${roomPath(roomId)}/state/${type}/${encodeURIComponent(key)}`,
        user,
        content,
      )).event_id as string,
    redact: (user: RegisteredUser, roomId: string, eventId: string) =>
      ok(
        "PUT",
        `${roomPath(roomId)}/redact/${encodeURIComponent(eventId)}/r${++txn}`,
        user,
        { reason: "removed" },
      ),
    sync: async (user: RegisteredUser, filter: Record<string, unknown>, since?: string) => {
      const q = `timeout=0&filter=${encodeURIComponent(JSON.stringify(filter))}` +
        (since ? `&since=${since}` : "");
      return await ok("GET", `${V3}/sync?${q}`, user);
    },
  };
}

/** Markers with one verdict each. */
function verdicts(entries: Record<string, Verdict>) {
  return Object.entries(entries).map(([marker, verdict]) => ({ marker, phase: marker, verdict }));
}

Deno.test("ignored users: messages and invites from a user in m.ignored_user_list reach the ignorer by no route", async (t) => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const c = client(server);
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await c.createRoom(alice, { preset: "public_chat" });
    await c.join(bob, roomId);
    await c.join(carol, roomId);
    const since = (await c.sync(alice, {})).next_batch;

    await c.ok(
      "PUT",
      `${V3}/user/${encodeURIComponent(alice.userId)}/account_data/m.ignored_user_list`,
      alice,
      { ignored_users: { [bob.userId]: {} } },
    );
    const BOB = "[[ignored|bob-message]]";
    const CAROL = "[[ignored|carol-message]]";
    const BOB_NAME = "[[ignored|bob-state]]";
    const bobEvent = await c.say(bob, roomId, BOB);
    const carolEvent = await c.say(carol, roomId, CAROL);
    // "State events will still be sent to the client, even if the user is ignored" (spec,
    // Ignoring Users): bob's own member event must still arrive.
    await c.setState(bob, roomId, "m.room.member", bob.userId, {
      membership: "join",
      displayname: BOB_NAME,
    });
    const bobRoom = await c.createRoom(bob, { preset: "private_chat", invite: [alice.userId] });
    const carolRoom = await c.createRoom(carol, { preset: "private_chat", invite: [alice.userId] });
    const messageMarkers = verdicts({ [BOB]: "forbidden", [CAROL]: "required" });
    const room = c.roomPath(roomId);

    await t.step("control: a reader who does not ignore bob sees his message", async () => {
      const page = await c.ok("GET", `${room}/messages?dir=b&limit=50`, carol);
      checkMarkers("carol's /messages", page, verdicts({ [BOB]: "required" }));
    });

    for (const [label, sinceToken] of [["initial", undefined], ["incremental", since]] as const) {
      await t.step(`/sync ${label}: no message from bob, his state still`, async () => {
        const body = await c.sync(alice, { room: { timeline: { limit: 50 } } }, sinceToken);
        checkMarkers(
          `/sync ${label}`,
          body,
          verdicts({ [BOB]: "forbidden", [CAROL]: "required", [BOB_NAME]: "required" }),
        );
      });
      await t.step(`/sync ${label}: no invite from bob`, async () => {
        const body = await c.sync(alice, {}, sinceToken);
        const invites = Object.keys(body.rooms?.invite ?? {});
        assert(invites.includes(carolRoom), `/sync ${label}: carol's invite missing`);
        assert(!invites.includes(bobRoom), `LEAK: /sync ${label} delivers bob's invite`);
      });
    }

    await t.step("/messages: no message from bob", async () => {
      for (const dir of ["b", "f"]) {
        const page = await c.ok("GET", `${room}/messages?dir=${dir}&limit=50`, alice);
        checkMarkers(`/messages dir=${dir}`, page, messageMarkers);
      }
    });

    await t.step("/context: bob's message is not among the events around carol's", async () => {
      const ctx = await c.ok(
        "GET",
        `${room}/context/${encodeURIComponent(carolEvent)}?limit=30`,
        alice,
      );
      checkMarkers("/context on carol's message", ctx, messageMarkers);
    });

    await t.step("/context and /event on bob's message do not return it", async () => {
      for (const path of [`context/${encodeURIComponent(bobEvent)}`, `event/${bobEvent}`]) {
        const res = await c.get(`${room}/${path}`, alice);
        checkMarkers(`GET /${path} (${res.status})`, res.body, verdicts({ [BOB]: "forbidden" }));
      }
    });

    await t.step("/notifications: nothing from bob", async () => {
      const body = await c.ok("GET", `${V3}/notifications?limit=100`, alice);
      checkMarkers("/notifications", body, messageMarkers);
    });

    // "Following an update of the m.ignored_user_list, the sync API for all clients should
    // immediately start ignoring (or un-ignoring) the user" (spec, Ignoring Users): no stale
    // copy of the list may keep hiding him.
    await t.step("un-ignored: bob's next message reaches alice again", async () => {
      const beforeUnignore = (await c.sync(alice, {})).next_batch;
      await c.ok(
        "PUT",
        `${V3}/user/${encodeURIComponent(alice.userId)}/account_data/m.ignored_user_list`,
        alice,
        { ignored_users: {} },
      );
      const AGAIN = "[[ignored|bob-after-unignore]]";
      await c.say(bob, roomId, AGAIN);
      const back = verdicts({ [AGAIN]: "required" });
      checkMarkers("/messages", await c.ok("GET", `${room}/messages?dir=b&limit=50`, alice), back);
      checkMarkers("/sync incremental", await c.sync(alice, {}, beforeUnignore), back);
    });
  } finally {
    server.close();
  }
});

Deno.test("redacted content: after a redaction the original content appears in no response", async (t) => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const c = client(server);
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await c.createRoom(alice, { preset: "public_chat" });
    await c.join(bob, roomId);
    const room = c.roomPath(roomId);
    const since = (await c.sync(bob, {})).next_batch;

    const MESSAGE = "[[redacted|message]]";
    const TOPIC = "[[redacted|topic]]";
    const NAME = "[[redacted|displayname]]";
    const message = await c.say(alice, roomId, MESSAGE);
    const topic = await c.setState(alice, roomId, "m.room.topic", "", { topic: TOPIC });
    const member = await c.setState(bob, roomId, "m.room.member", bob.userId, {
      membership: "join",
      displayname: NAME,
    });
    const all = (verdict: Verdict) =>
      verdicts({ [MESSAGE]: verdict, [TOPIC]: verdict, [NAME]: verdict });

    await t.step("control: before the redactions the markers are there", async () => {
      checkMarkers(
        "/messages",
        await c.ok("GET", `${room}/messages?dir=b&limit=50`, bob),
        all("required"),
      );
      checkMarkers(
        "/sync federation",
        await c.sync(bob, { event_format: "federation", room: { timeline: { limit: 50 } } }),
        all("required"),
      );
      checkMarkers(
        "/notifications",
        await c.ok("GET", `${V3}/notifications?limit=100`, bob),
        verdicts({ [MESSAGE]: "required" }),
      );
      checkMarkers(
        "/members",
        await c.ok("GET", `${room}/members`, alice),
        verdicts({
          [NAME]: "required",
        }),
      );
    });

    for (const id of [message, topic, member]) await c.redact(alice, roomId, id);
    const gone = all("forbidden");

    const reads: [string, string][] = [
      ["/messages dir=b", `${room}/messages?dir=b&limit=50`],
      ["/messages dir=f", `${room}/messages?dir=f&limit=50`],
      ["/event of the message", `${room}/event/${encodeURIComponent(message)}`],
      ["/event of the topic", `${room}/event/${encodeURIComponent(topic)}`],
      ["/event of the member event", `${room}/event/${encodeURIComponent(member)}`],
      ["/context on the message", `${room}/context/${encodeURIComponent(message)}?limit=30`],
      ["/members", `${room}/members`],
      ["/joined_members", `${room}/joined_members`],
      ["/state", `${room}/state`],
      ["/state/m.room.topic", `${room}/state/m.room.topic/`],
      [
        "/state/m.room.member/{bob}",
        `${room}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      ],
      ["/notifications", `${V3}/notifications?limit=100`],
    ];
    const syncs: [string, Record<string, unknown>, string | undefined][] = [
      ["/sync initial", { room: { timeline: { limit: 50 } } }, undefined],
      ["/sync incremental", { room: { timeline: { limit: 50 } } }, since],
      [
        "/sync initial, event_format federation",
        { event_format: "federation", room: { timeline: { limit: 50 } } },
        undefined,
      ],
      [
        "/sync incremental, event_format federation",
        { event_format: "federation", room: { timeline: { limit: 50 } } },
        since,
      ],
    ];

    const checkEverywhere = async (when: string) => {
      for (const [label, path] of reads) {
        await t.step(`${when}: ${label}`, async () => {
          for (const reader of [bob, alice]) {
            const res = await c.get(path, reader);
            assert(res.status === 200, `${label}: ${res.status} ${JSON.stringify(res.body)}`);
            checkMarkers(`${label} as ${reader.userId}`, res.body, gone);
          }
        });
      }
      for (const [label, filter, sinceToken] of syncs) {
        await t.step(`${when}: ${label}`, async () => {
          checkMarkers(label, await c.sync(bob, filter, sinceToken), gone);
        });
      }
    };

    await checkEverywhere("after the redactions");
    // The next topic and display name carry the redacted ones as unsigned.prev_content.
    await c.setState(alice, roomId, "m.room.topic", "", { topic: "a plain topic" });
    await c.setState(bob, roomId, "m.room.member", bob.userId, {
      membership: "join",
      displayname: "plain bob",
    });
    await checkEverywhere("after later state replaced them (prev_content)");
  } finally {
    server.close();
  }
});
