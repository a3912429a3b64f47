/**
 * Resource limits (issue 8, findings 6, 12 and 13): request bodies are read only up to their
 * limit, chunked or not; JSON nesting is capped before anything recursive sees it; page sizes
 * are clamped before they reach KV's 1,000-entry list cap. Rates and caps on writes (finding 10)
 * are in resource_caps_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { registerUser } from "../routes/client_harness.ts";
import { MAX_JSON_BODY_BYTES, MAX_JSON_DEPTH } from "../../routes/json_body.ts";
import { MAX_ROOM_KEYS_BODY_BYTES } from "../../routes/client/room_keys_routes.ts";

const V3 = "/_matrix/client/v3";
const CHUNK = 64 * 1024;

/**
 * A body of `total` bytes of JSON-ish padding made on demand, with a count of the bytes the
 * reader actually pulled: a server that stops at its limit pulls little of a huge body.
 */
function generatedBody(total: number) {
  const chunk = new TextEncoder().encode("x".repeat(CHUNK));
  const counter = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (counter.pulled === 0) {
        const open = new TextEncoder().encode('{"pad":"');
        counter.pulled += open.byteLength;
        controller.enqueue(open);
        return;
      }
      if (counter.pulled >= total) {
        controller.close();
        return;
      }
      counter.pulled += chunk.byteLength;
      controller.enqueue(chunk.slice());
    },
  }, { highWaterMark: 0 });
  return { stream, counter };
}

async function setupRoom(server: Awaited<ReturnType<typeof startTestServer>>) {
  const alice = await registerUser(server, "alice");
  const created = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  assertEquals(created.status, 200);
  const roomId: string = created.body.room_id;
  return { alice, roomId, room: `${V3}/rooms/${encodeURIComponent(roomId)}` };
}

// ---- Finding 6: chunked bodies without Content-Length ----

Deno.test("finding 6: a chunked body over the limit is refused over real HTTP before it is read", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  // Served as main.ts serves it: Deno.serve with the app's fetch, on a free port.
  const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, server.app.fetch);
  try {
    const { port } = http.addr as Deno.NetAddr;
    const total = 1024 * 1024 * 1024; // 1 GiB, generated on demand, never held
    const { stream, counter } = generatedBody(total);
    // Unauthenticated, as in the report: /register reads its body before any session exists.
    const res = await fetch(`http://127.0.0.1:${port}${V3}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
    });
    const body = await res.json();
    assertEquals(res.status, 413);
    assertEquals(body.errcode, "M_TOO_LARGE");
    // The server stopped reading at its limit: the client was asked for a few socket buffers'
    // worth past the 1 MiB limit (about 4.8 MB measured here), never the gigabyte (1 GiB was
    // read whole before).
    await stream.cancel().catch(() => {});
    assert(
      counter.pulled < 64 * 1024 * 1024,
      `the client was made to send ${counter.pulled} bytes`,
    );
  } finally {
    await http.shutdown();
    server.close();
  }
});

Deno.test("finding 6: over real HTTP, a route refusing before it reads leaves the body unread", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, server.app.fetch);
  try {
    const { port } = http.addr as Deno.NetAddr;
    const { stream, counter } = generatedBody(1024 * 1024 * 1024);
    // No access token: 401 before the handler reads anything; the server must not drain it.
    const res = await fetch(`http://127.0.0.1:${port}${V3}/createRoom`, {
      method: "POST",
      body: stream,
    });
    assertEquals(res.status, 401);
    assertEquals((await res.json()).errcode, "M_MISSING_TOKEN");
    await stream.cancel().catch(() => {});
    assert(counter.pulled < 64 * 1024 * 1024, `the client sent ${counter.pulled} bytes`);
  } finally {
    await http.shutdown();
    server.close();
  }
});

Deno.test("finding 6: no route reads a chunked body past its limit (every route with a body)", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const { alice, roomId } = await setupRoom(server);
    const params: Record<string, string> = {
      roomId,
      roomIdOrAlias: roomId,
      userId: alice.userId,
      deviceId: alice.deviceId,
    };
    const seen = new Set<string>();
    const failures: string[] = [];
    let refused = 0;
    for (const route of server.app.routes) {
      if (["GET", "HEAD", "OPTIONS", "ALL"].includes(route.method)) continue;
      // Logging out would end the session every other route is tried with.
      if (route.path.includes("/logout")) continue;
      const key = `${route.method} ${route.path}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const path = route.path.replace(/:(\w+)/g, (_, name: string) =>
        encodeURIComponent(params[name] ?? (name === "eventId" ? "$x:example.org:8448" : "x"))) +
        (route.path.includes("/room_keys/") ? "?version=1" : "");
      const { stream, counter } = generatedBody(64 * 1024 * 1024);
      const res = await server.app.request(path, {
        method: route.method,
        headers: { authorization: `Bearer ${alice.accessToken}` },
        body: stream,
        duplex: "half",
      } as RequestInit);
      const text = await res.text();
      await stream.cancel().catch(() => {});
      if (res.status === 413) {
        refused++;
      }
      if (res.status >= 500) {
        failures.push(`${key}: ${res.status} ${text.slice(0, 200)}`);
      }
      // The largest body limit of any route, plus the one chunk that crossed it. Media uploads
      // stream into KV chunks (never held whole) up to TESSERA_MEDIA_MAX_UPLOAD_BYTES.
      const limit = route.path.startsWith("/_matrix/media/")
        ? server.config.media.maxUploadBytes
        : MAX_ROOM_KEYS_BODY_BYTES;
      if (counter.pulled > limit + 2 * CHUNK) {
        failures.push(`${key}: read ${counter.pulled} bytes`);
      }
    }
    assertEquals(failures, []);
    const whoami = await server.request("GET", `${V3}/account/whoami`, {
      token: alice.accessToken,
    });
    assertEquals(whoami.status, 200, "the session lasted through every route");
    // Most write routes read a JSON body: they all answered 413.
    assert(refused >= 40, `only ${refused} routes answered 413`);
  } finally {
    server.close();
  }
});

Deno.test("finding 6: routes read bodies only through readJsonBody, which stops at the limit", async () => {
  // A handler calling c.req.json()/arrayBuffer()/text() would read a chunked body whole again.
  const direct = /\bc\.req\.(json|text|arrayBuffer|blob|formData|parseBody|bytes)\(|\.raw\.body\b/;
  const offenders: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (
        path.endsWith(".ts") && !path.endsWith("/json_body.ts") &&
        // Uploads stream the raw body into the media store, which counts it against
        // TESSERA_MEDIA_MAX_UPLOAD_BYTES as it goes (domain/media/media_service.ts).
        !path.endsWith("/media/upload_routes.ts")
      ) {
        const text = await Deno.readTextFile(path);
        if (direct.test(text)) offenders.push(path);
      }
    }
  };
  await walk(new URL("../../routes", import.meta.url).pathname);
  assertEquals(offenders, []);
});

Deno.test("finding 6: a chunked body under the limit is still read whole", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const { alice, room } = await setupRoom(server);
    const content = JSON.stringify({ msgtype: "m.text", body: "y".repeat(30_000) });
    const bytes = new TextEncoder().encode(content);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 1000) controller.enqueue(bytes.slice(i, i + 1000));
        controller.close();
      },
    });
    const res = await server.app.request(`${room}/send/m.room.message/chunked`, {
      method: "PUT",
      headers: { authorization: `Bearer ${alice.accessToken}` },
      body: stream,
      duplex: "half",
    } as RequestInit);
    assertEquals(res.status, 200);
    const eventId = (await res.json()).event_id;
    const event = await server.request("GET", `${room}/event/${encodeURIComponent(eventId)}`, {
      token: alice.accessToken,
    });
    assertEquals(event.body.content.body.length, 30_000);
    assert(MAX_JSON_BODY_BYTES > bytes.length);
  } finally {
    server.close();
  }
});

// ---- Finding 12: page sizes reach KV's list cap ----

Deno.test("finding 12: /messages and /context with limits up to 1000 and beyond answer 200", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const { alice, room } = await setupRoom(server);
    const sent = await server.request("PUT", `${room}/send/m.room.message/t1`, {
      token: alice.accessToken,
      body: { msgtype: "m.text", body: "hi" },
    });
    const eventId = encodeURIComponent(sent.body.event_id);
    const filter = encodeURIComponent(JSON.stringify({ limit: 5000 }));
    const paths = [
      ...[990, 991, 995, 1000, 1001, 999999999].flatMap((n) => [
        `${room}/messages?dir=b&limit=${n}`,
        `${room}/messages?dir=f&limit=${n}`,
        `${room}/context/${eventId}?limit=${n}`,
      ]),
      `${room}/messages?dir=b&limit=1000&filter=${filter}`,
      `${room}/context/${eventId}?limit=1000&filter=${filter}`,
      `${V3}/notifications?limit=1000`,
      `${V3}/publicRooms?limit=1000`,
    ];
    const failures: string[] = [];
    for (const path of paths) {
      const res = await server.request("GET", path, { token: alice.accessToken });
      if (res.status !== 200) failures.push(`${path}: ${res.status} ${res.body?.errcode}`);
    }
    for (const limit of [991, 1000]) {
      const res = await server.request("POST", `${V3}/publicRooms`, {
        token: alice.accessToken,
        body: { limit },
      });
      if (res.status !== 200) failures.push(`POST publicRooms ${limit}: ${res.status}`);
    }
    const sync = await server.request(
      "GET",
      `${V3}/sync?filter=${
        encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 1000 } } }))
      }`,
      { token: alice.accessToken },
    );
    if (sync.status !== 200) failures.push(`sync timeline limit 1000: ${sync.status}`);
    assertEquals(failures, []);
  } finally {
    server.close();
  }
});

// ---- Finding 13: deep JSON ----

/** `{"a":{"a":...}}` nested `depth` levels deep around `inner`. */
function nested(depth: number, inner = "1"): string {
  return '{"a":'.repeat(depth) + inner + "}".repeat(depth);
}

Deno.test("finding 13: bodies nested thousands of levels deep answer 400 M_BAD_JSON on every route", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const { alice, roomId, room } = await setupRoom(server);
    const user = encodeURIComponent(alice.userId);
    const deepActions = `{"actions":["notify"],"conditions":[{"kind":"event_match","key":"a",` +
      `"pattern":${"[".repeat(2000)}1${"]".repeat(2000)}}]}`;
    const cases: [string, string, string][] = [
      ["PUT", `${V3}/pushrules/global/override/my.rule`, deepActions],
      ["PUT", `${V3}/pushrules/global/override/my.rule`, nested(2000)],
      ["PUT", `${V3}/pushrules/global/override/my.rule/actions`, nested(2000)],
      ["PUT", `${V3}/user/${user}/account_data/org.example.deep`, nested(2000)],
      [
        "PUT",
        `${V3}/user/${user}/rooms/${encodeURIComponent(roomId)}/account_data/org.example.deep`,
        nested(2000),
      ],
      ["PUT", `${room}/state/org.example.deep/`, nested(2000)],
      ["PUT", `${room}/send/org.example.deep/t1`, nested(2000)],
      ["POST", `${V3}/user/${user}/filter`, nested(2000)],
      ["POST", `${V3}/user/${user}/filter`, `{"room":{"timeline":${nested(100_000)}}}`],
      ["POST", `${V3}/createRoom`, `{"creation_content":${nested(5000)}}`],
      ["POST", `${V3}/keys/upload`, `[`.repeat(200_000) + "]".repeat(200_000)],
    ];
    const failures: string[] = [];
    for (const [method, path, body] of cases) {
      const res = await server.request(method, path, { token: alice.accessToken, body });
      if (res.status !== 400 || res.body?.errcode !== "M_BAD_JSON") {
        failures.push(`${method} ${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
      }
    }
    assertEquals(failures, []);
    // Nothing was stored: the account data and state are absent.
    const state = await server.request("GET", `${room}/state/org.example.deep/`, {
      token: alice.accessToken,
    });
    assertEquals(state.status, 404);
    const data = await server.request("GET", `${V3}/user/${user}/account_data/org.example.deep`, {
      token: alice.accessToken,
    });
    assertEquals(data.status, 404);
  } finally {
    server.close();
  }
});

Deno.test("finding 13: nesting up to the cap is accepted; strings with brackets do not count", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const { alice } = await setupRoom(server);
    const user = encodeURIComponent(alice.userId);
    const path = `${V3}/user/${user}/account_data/org.example.nested`;
    // The body object itself is the first level.
    const ok = await server.request("PUT", path, {
      token: alice.accessToken,
      body: nested(MAX_JSON_DEPTH),
    });
    assertEquals(ok.status, 200);
    const over = await server.request("PUT", path, {
      token: alice.accessToken,
      body: nested(MAX_JSON_DEPTH + 1),
    });
    assertEquals(over.status, 400);
    assertEquals(over.body.errcode, "M_BAD_JSON");
    const brackets = await server.request("PUT", path, {
      token: alice.accessToken,
      body: { text: "[{".repeat(5000) + '\\"[' + "}]".repeat(10) },
    });
    assertEquals(brackets.status, 200);
  } finally {
    server.close();
  }
});
