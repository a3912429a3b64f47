/** Room events over HTTP: send (idempotent), state, redact, event, context, messages, visibility. */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

async function setup(preset = "public_chat") {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const created = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset },
  });
  assertEquals(created.status, 200);
  const roomId: string = created.body.room_id;
  const room = `${V3}/rooms/${encodeURIComponent(roomId)}`;
  return { server, alice, bob, roomId, room };
}

async function logSize(server: Awaited<ReturnType<typeof setup>>["server"], roomId: string) {
  return (await server.deps.eventStore.roomHead(roomId))!.lastPosition;
}

Deno.test("send is idempotent per device and txnId; the sender sees transaction_id", async () => {
  const { server, alice, roomId, room } = await setup();
  try {
    const body = { msgtype: "m.text", body: "hello" };
    const [a, b] = await Promise.all([
      server.request("PUT", `${room}/send/m.room.message/t1`, { token: alice.accessToken, body }),
      server.request("PUT", `${room}/send/m.room.message/t1`, { token: alice.accessToken, body }),
    ]);
    assertEquals(a.status, 200);
    assertEquals(b.body.event_id, a.body.event_id);
    const size = await logSize(server, roomId);
    const again = await server.request(
      "PUT",
      `/_matrix/client/r0/rooms/${roomId}/send/m.room.message/t1`,
      {
        token: alice.accessToken,
        body,
      },
    );
    assertEquals(again.body.event_id, a.body.event_id);
    assertEquals(await logSize(server, roomId), size);
    const event = await server.request(
      "GET",
      `${room}/event/${encodeURIComponent(a.body.event_id)}`,
      {
        token: alice.accessToken,
      },
    );
    assertEquals(event.status, 200);
    assertEquals(event.body.content, body);
    assertEquals(event.body.unsigned.transaction_id, "t1");
    assertEquals(await server.deps.transactions.transactionIdFor(a.body.event_id, "nope"), null);
  } finally {
    server.close();
  }
});

Deno.test("send: non-members are refused and nothing is written; bad input is a 4xx", async () => {
  const { server, alice, bob, roomId, room } = await setup();
  try {
    const size = await logSize(server, roomId);
    const refused = await server.request("PUT", `${room}/send/m.room.message/x`, {
      token: bob.accessToken,
      body: { body: "hi" },
    });
    assertEquals(refused.status, 403);
    assertEquals(refused.body.errcode, "M_FORBIDDEN");
    const cases: [string, unknown, number, string][] = [
      [`${room}/send/m.room.message/a`, "{not json", 400, "M_NOT_JSON"],
      [`${room}/send/m.room.message/b`, [1, 2], 400, "M_BAD_JSON"],
      [`${V3}/rooms/not-a-room/send/m.room.message/c`, { body: "x" }, 400, "M_INVALID_PARAM"],
      [`${room}/state/m.room.topic`, "null", 400, "M_BAD_JSON"],
      [`${room}/redact/notanevent/r1`, {}, 400, "M_INVALID_PARAM"],
      [`${room}/redact/$abc:example.org/r2`, { reason: 5 }, 400, "M_BAD_JSON"],
    ];
    for (const [path, body, status, errcode] of cases) {
      const res = await server.request("PUT", path, { token: alice.accessToken, body });
      assertEquals([res.status, res.body.errcode], [status, errcode], path);
    }
    const noToken = await server.request("PUT", `${room}/send/m.room.message/d`, { body: {} });
    assertEquals(noToken.status, 401);
    assertEquals(await logSize(server, roomId), size);
  } finally {
    server.close();
  }
});

Deno.test("state: put and get with and without state key, format=event, 404 when unset", async () => {
  const { server, alice, bob, room } = await setup();
  try {
    const put = await server.request("PUT", `${room}/state/m.room.topic/`, {
      token: alice.accessToken,
      body: { topic: "Tea" },
    });
    assertEquals(put.status, 200);
    for (const path of [`${room}/state/m.room.topic`, `${room}/state/m.room.topic/`]) {
      const got = await server.request("GET", path, { token: alice.accessToken });
      assertEquals(got.body, { topic: "Tea" });
    }
    const full = await server.request("GET", `${room}/state/m.room.topic?format=event`, {
      token: alice.accessToken,
    });
    assertEquals(full.body.event_id, put.body.event_id);
    assertEquals(full.body.state_key, "");
    const missing = await server.request("GET", `${room}/state/m.room.name`, {
      token: alice.accessToken,
    });
    assertEquals([missing.status, missing.body.errcode], [404, "M_NOT_FOUND"]);
    const all = await server.request("GET", `${room}/state`, { token: alice.accessToken });
    assert(all.body.some((e: { type: string }) => e.type === "m.room.create"));
    const outsider = await server.request("GET", `${room}/state`, { token: bob.accessToken });
    assertEquals(outsider.status, 403);
    const bobPut = await server.request("PUT", `${room}/state/m.room.topic`, {
      token: bob.accessToken,
      body: { topic: "no" },
    });
    assertEquals(bobPut.status, 403);
  } finally {
    server.close();
  }
});

Deno.test("redact: the event is served redacted with redacted_because; retries are idempotent", async () => {
  const { server, alice, room } = await setup();
  try {
    const sent = await server.request("PUT", `${room}/send/m.room.message/m1`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "secret" },
    });
    const target = encodeURIComponent(sent.body.event_id);
    const r1 = await server.request("PUT", `${room}/redact/${target}/r1`, {
      token: alice.accessToken,
      body: { reason: "oops" },
    });
    assertEquals(r1.status, 200);
    const r2 = await server.request("PUT", `${room}/redact/${target}/r1`, {
      token: alice.accessToken,
      body: { reason: "oops" },
    });
    assertEquals(r2.body.event_id, r1.body.event_id);
    const event = await server.request("GET", `${room}/event/${target}`, {
      token: alice.accessToken,
    });
    assertEquals(event.body.content, {});
    assertEquals(event.body.unsigned.redacted_because.event_id, r1.body.event_id);
    assertEquals(event.body.unsigned.redacted_because.content.reason, "oops");
    const messages = await server.request("GET", `${room}/messages?dir=b&limit=5`, {
      token: alice.accessToken,
    });
    const shown = messages.body.chunk.find((e: { event_id: string }) =>
      e.event_id === sent.body.event_id
    );
    assertEquals(shown.content, {});
  } finally {
    server.close();
  }
});

Deno.test("messages: pages both ways with tokens, filters, lazy-loaded members, bad params", async () => {
  const { server, alice, room } = await setup();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await server.request("PUT", `${room}/send/m.room.message/p${i}`, {
        token: alice.accessToken,
        body: { msgtype: "m.text", body: `m${i}`, ...(i === 3 ? { url: "mxc://x/y" } : {}) },
      });
      ids.push(res.body.event_id);
    }
    const filter = encodeURIComponent(JSON.stringify({ types: ["m.room.message"] }));
    const first = await server.request("GET", `${room}/messages?dir=b&limit=3&filter=${filter}`, {
      token: alice.accessToken,
    });
    assertEquals(first.status, 200);
    assertEquals(first.body.chunk.map((e: { event_id: string }) => e.event_id), [
      ids[6],
      ids[5],
      ids[4],
    ]);
    const second = await server.request(
      "GET",
      `${room}/messages?dir=b&limit=3&from=${first.body.end}&filter=${filter}`,
      { token: alice.accessToken },
    );
    assertEquals(second.body.chunk.map((e: { event_id: string }) => e.event_id), [
      ids[3],
      ids[2],
      ids[1],
    ]);
    const forward = await server.request(
      "GET",
      `${room}/messages?dir=f&limit=2&from=${second.body.end}&filter=${filter}`,
      { token: alice.accessToken },
    );
    // Tokens sit between events: forward from where the backward page ended starts at its last event.
    assertEquals(forward.body.chunk.map((e: { event_id: string }) => e.event_id), [ids[1], ids[2]]);
    const urls = encodeURIComponent(
      JSON.stringify({ contains_url: true, lazy_load_members: true }),
    );
    const withUrl = await server.request("GET", `${room}/messages?dir=b&filter=${urls}`, {
      token: alice.accessToken,
    });
    assertEquals(withUrl.body.chunk.map((e: { event_id: string }) => e.event_id), [ids[3]]);
    assertEquals(withUrl.body.state.map((e: { state_key: string }) => e.state_key), [alice.userId]);
    for (const query of ["dir=x", "dir=b&limit=-1", "dir=b&from=zz", "dir=b&filter=%7B", ""]) {
      const bad = await server.request("GET", `${room}/messages?${query}`, {
        token: alice.accessToken,
      });
      assertEquals(bad.status, 400, query);
      assert(["M_INVALID_PARAM", "M_MISSING_PARAM"].includes(bad.body.errcode), query);
    }
  } finally {
    server.close();
  }
});

Deno.test("context: events around an event with tokens and state", async () => {
  const { server, alice, room } = await setup();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await server.request("PUT", `${room}/send/m.room.message/c${i}`, {
        token: alice.accessToken,
        body: { msgtype: "m.text", body: `c${i}` },
      });
      ids.push(res.body.event_id);
    }
    const res = await server.request(
      "GET",
      `${room}/context/${encodeURIComponent(ids[2])}?limit=2`,
      {
        token: alice.accessToken,
      },
    );
    assertEquals(res.status, 200);
    assertEquals(res.body.event.event_id, ids[2]);
    assertEquals(res.body.events_before.map((e: { event_id: string }) => e.event_id), [ids[1]]);
    assertEquals(res.body.events_after.map((e: { event_id: string }) => e.event_id), [ids[3]]);
    assert(res.body.state.some((e: { type: string }) => e.type === "m.room.create"));
    const next = await server.request(
      "GET",
      `${room}/messages?dir=f&limit=5&from=${res.body.end}`,
      {
        token: alice.accessToken,
      },
    );
    assertEquals(next.body.chunk.map((e: { event_id: string }) => e.event_id), [ids[4]]);
    const unknown = await server.request(
      "GET",
      `${room}/context/${encodeURIComponent("$nope:example.org")}?limit=2`,
      {
        token: alice.accessToken,
      },
    );
    assertEquals(unknown.status, 404);
  } finally {
    server.close();
  }
});

Deno.test("history visibility: joined hides earlier history from a later joiner; leavers stop at leave", async () => {
  const { server, alice, bob, roomId, room } = await setup();
  try {
    await server.request("PUT", `${room}/state/m.room.history_visibility`, {
      token: alice.accessToken,
      body: { history_visibility: "joined" },
    });
    const before = await server.request("PUT", `${room}/send/m.room.message/h1`, {
      token: alice.accessToken,
      body: { body: "before bob" },
    });
    const joined = await server.request("POST", `${V3}/join/${encodeURIComponent(roomId)}`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const during = await server.request("PUT", `${room}/send/m.room.message/h2`, {
      token: alice.accessToken,
      body: { body: "with bob" },
    });
    const hidden = await server.request(
      "GET",
      `${room}/event/${encodeURIComponent(before.body.event_id)}`,
      {
        token: bob.accessToken,
      },
    );
    assertEquals(hidden.status, 404);
    await server.request("POST", `${room}/leave`, { token: bob.accessToken, body: {} });
    const after = await server.request("PUT", `${room}/send/m.room.message/h3`, {
      token: alice.accessToken,
      body: { body: "after bob" },
    });
    const page = await server.request("GET", `${room}/messages?dir=b&limit=50`, {
      token: bob.accessToken,
    });
    const seen = page.body.chunk.map((e: { event_id: string }) => e.event_id);
    assert(seen.includes(during.body.event_id));
    assert(!seen.includes(before.body.event_id));
    assert(!seen.includes(after.body.event_id));
    const state = await server.request(
      "GET",
      `${room}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
      },
    );
    assertEquals(state.body.membership, "leave");
  } finally {
    server.close();
  }
});

Deno.test("messages: a page that read events has an end; only an empty page has none", async () => {
  const { server, alice, room } = await setup();
  try {
    const sent = await server.request("PUT", `${room}/send/m.room.message/e1`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "only" },
    });
    // Backwards over the whole room in one page: it ran out, but the page read events.
    const all = await server.request("GET", `${room}/messages?dir=b&limit=100`, {
      token: alice.accessToken,
    });
    assert(all.body.chunk.length > 1);
    assertEquals(typeof all.body.end, "string");
    const past = await server.request("GET", `${room}/messages?dir=b&from=${all.body.end}`, {
      token: alice.accessToken,
    });
    assertEquals([past.body.chunk, past.body.end], [[], undefined]);

    // Forwards to the live end: the end token then picks up what is sent later.
    const forward = await server.request("GET", `${room}/messages?dir=f&limit=100`, {
      token: alice.accessToken,
    });
    assertEquals(forward.body.chunk.at(-1).event_id, sent.body.event_id);
    const later = await server.request("PUT", `${room}/send/m.room.message/e2`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "later" },
    });
    const next = await server.request("GET", `${room}/messages?dir=f&from=${forward.body.end}`, {
      token: alice.accessToken,
    });
    assertEquals(next.body.chunk.map((e: { event_id: string }) => e.event_id), [
      later.body.event_id,
    ]);
  } finally {
    server.close();
  }
});

Deno.test("POST /send/{eventType} without a transaction ID sends a new event each time", async () => {
  const { server, alice, bob, roomId, room } = await setup();
  try {
    const body = { msgtype: "m.text", body: "legacy" };
    const first = await server.request("POST", `${room}/send/m.room.message`, {
      token: alice.accessToken,
      body,
    });
    assertEquals(first.status, 200);
    const size = await logSize(server, roomId);
    const second = await server.request(
      "POST",
      `/_matrix/client/r0/rooms/${roomId}/send/m.room.message`,
      {
        token: alice.accessToken,
        body,
      },
    );
    assert(second.body.event_id !== first.body.event_id);
    assertEquals(await logSize(server, roomId), size + 1);
    const event = await server.request(
      "GET",
      `${room}/event/${encodeURIComponent(first.body.event_id)}`,
      { token: alice.accessToken },
    );
    assertEquals(event.body.content, body);
    const outsider = await server.request("POST", `${room}/send/m.room.message`, {
      token: bob.accessToken,
      body,
    });
    assertEquals(outsider.status, 403);
    const tooLarge = await server.request("POST", `${room}/send/m.room.message`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "A".repeat(70_000) },
    });
    assertEquals(tooLarge.status, 413);
    const notObject = await server.request("POST", `${room}/send/m.room.message`, {
      token: alice.accessToken,
      body: [1],
    });
    assertEquals([notObject.status, notObject.body.errcode], [400, "M_BAD_JSON"]);
  } finally {
    server.close();
  }
});

Deno.test("messages: a sync token as from is the boundary after what that sync saw", async () => {
  const { server, alice, room } = await setup();
  try {
    const send = async (txn: string) =>
      (await server.request("PUT", `${room}/send/m.room.message/${txn}`, {
        token: alice.accessToken,
        body: { msgtype: "m.text", body: txn },
      })).body.event_id as string;
    const seen = await send("seen");
    const sync = await server.request("GET", `${V3}/sync?timeout=0`, { token: alice.accessToken });
    const token: string = sync.body.next_batch;
    const later = [await send("later1"), await send("later2")];
    const ids = (body: { chunk: { event_id: string }[] }) => body.chunk.map((e) => e.event_id);
    const forward = await server.request("GET", `${room}/messages?dir=f&from=${token}`, {
      token: alice.accessToken,
    });
    assertEquals(ids(forward.body), later);
    const backward = await server.request("GET", `${room}/messages?dir=b&limit=1&from=${token}`, {
      token: alice.accessToken,
    });
    assertEquals(ids(backward.body), [seen]);
    const bad = await server.request("GET", `${room}/messages?dir=f&from=s0`, {
      token: alice.accessToken,
    });
    assertEquals([bad.status, bad.body.errcode], [400, "M_INVALID_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("event: a room the reader may not see answers 404, as an unknown event does", async () => {
  const { server, alice, bob, room } = await setup("private_chat");
  try {
    const sent = await server.request("PUT", `${room}/send/m.room.message/hidden`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "private" },
    });
    const path = `${room}/event/${encodeURIComponent(sent.body.event_id)}`;
    const outsider = await server.request("GET", path, { token: bob.accessToken });
    assertEquals([outsider.status, outsider.body.errcode], [404, "M_NOT_FOUND"]);
    const unknown = await server.request(
      "GET",
      `${room}/event/${encodeURIComponent("$nope:example.org")}`,
      {
        token: bob.accessToken,
      },
    );
    assertEquals([unknown.status, unknown.body.errcode], [404, "M_NOT_FOUND"]);
    assertEquals((await server.request("GET", path, { token: alice.accessToken })).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("send: floats, integers past 2^53 and non-JSON numbers are refused", async () => {
  const { server, alice, room } = await setup();
  try {
    const cases: [unknown, number, string][] = [
      [{ body: 1.5 }, 400, "M_BAD_JSON"],
      [{ body: 9007199254740992 }, 400, "M_BAD_JSON"],
      [{ body: -9007199254740992 }, 400, "M_BAD_JSON"],
    ];
    let n = 0;
    for (const [content, status, errcode] of cases) {
      for (const [method, path] of [["POST", ""], ["PUT", `/t${n++}`]]) {
        const res = await server.request(method, `${room}/send/m.test${path}`, {
          token: alice.accessToken,
          body: content,
        });
        assertEquals([res.status, res.body.errcode], [status, errcode], JSON.stringify(content));
      }
    }
    for (const raw of ['{"body": Infinity}', '{"body": NaN}', '{"body": -Infinity}']) {
      // A string body is sent as is.
      const res = await server.request("POST", `${room}/send/m.test`, {
        token: alice.accessToken,
        body: raw,
      });
      assertEquals([res.status, res.body.errcode], [400, "M_NOT_JSON"], raw);
    }
    const fine = await server.request("POST", `${room}/send/m.test`, {
      token: alice.accessToken,
      body: { body: 9007199254740991 },
    });
    assertEquals(fine.status, 200);
  } finally {
    server.close();
  }
});
