/**
 * The media repository over HTTP: uploads (direct and asynchronous) and authenticated downloads
 * round trip, with the safety headers; limits and quotas answer M_TOO_LARGE; bodies that lie
 * about their length or end early are refused; none of those leaves anything in KV; media IDs
 * that could traverse are never looked up; the legacy unauthenticated reads follow
 * TESSERA_MEDIA_LEGACY; quarantined media is served to no one.
 */
import { assert, assertEquals } from "../../assert.ts";
import { FAST_HASHING, registerUser } from "../client_harness.ts";
import { startTestServer } from "../test_server.ts";
import { mediaKeys } from "../../../kv/schema.ts";
import { MEDIA_CHUNK_BYTES } from "../../../domain/ports/media_store.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const SERVER = "example.org:8448";
const CLIENT_V1 = "/_matrix/client/v1/media";

/** A raw request to the in-process app (bodies that are not JSON, headers as given). */
async function raw(
  server: Server,
  method: string,
  path: string,
  init: { token?: string; body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  return await server.app.request(path, { method, headers, body: init.body });
}

/** Upload `bytes` and return the mxc URI (asserting success). */
async function upload(
  server: Server,
  token: string,
  bytes: Uint8Array<ArrayBuffer>,
  contentType = "application/octet-stream",
  fileName?: string,
): Promise<string> {
  const query = fileName !== undefined ? `?filename=${encodeURIComponent(fileName)}` : "";
  const res = await raw(server, "POST", `/_matrix/media/v3/upload${query}`, {
    token,
    body: bytes,
    headers: { "content-type": contentType },
  });
  const body = await res.json();
  assertEquals(res.status, 200, JSON.stringify(body));
  assert(typeof body.content_uri === "string" && body.content_uri.startsWith(`mxc://${SERVER}/`));
  return body.content_uri;
}

function mediaIdOf(mxc: string): string {
  return mxc.split("/").pop()!;
}

/** How many entries under a KV prefix (nothing stored is checked with this). */
async function count(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

/** Nothing of any upload is in KV: no metadata, no chunks, no pending writes, no usage. */
async function assertNothingStored(kv: Deno.Kv): Promise<void> {
  assertEquals(await count(kv, ["mediaid_meta"]), 0, "metadata");
  assertEquals(await count(kv, ["mediaid_chunk"]), 0, "chunks");
  assertEquals(await count(kv, ["mediaupload_pending"]), 0, "pending writes");
  assertEquals(await count(kv, ["userid_mediausage"]), 0, "usage");
}

function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** A stream of `bytes` in pieces of `piece` bytes (a chunked request body). */
function streamOf(bytes: Uint8Array, piece = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + piece));
      offset += piece;
    },
  });
}

Deno.test("media: upload and authenticated download round trip, with config and safety headers", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const text = new TextEncoder().encode("hello media");
    const mxc = await upload(server, alice.accessToken, text, "text/plain", "notes.txt");
    const id = mediaIdOf(mxc);
    assert(/^[A-Za-z0-9_-]{24}$/.test(id), id);

    const res = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`, {
      token: bob.accessToken,
    });
    assertEquals(res.status, 200);
    assertEquals(new Uint8Array(await res.arrayBuffer()), text);
    assertEquals(res.headers.get("content-type"), "text/plain; charset=UTF-8");
    assertEquals(res.headers.get("content-disposition"), "inline; filename=notes.txt");
    assertEquals(res.headers.get("content-length"), String(text.byteLength));
    assert(res.headers.get("content-security-policy")!.startsWith("sandbox;"));
    assertEquals(res.headers.get("x-content-type-options"), "nosniff");
    assertEquals(res.headers.get("cross-origin-resource-policy"), "cross-origin");

    // The file name in the path wins; a non-token name uses RFC 6266's filename*.
    const named = await raw(
      server,
      "GET",
      `${CLIENT_V1}/download/${SERVER}/${id}/${encodeURIComponent("résumé (1).txt")}`,
      { token: bob.accessToken },
    );
    await named.body?.cancel();
    assertEquals(
      named.headers.get("content-disposition"),
      "inline; filename*=utf-8''r%C3%A9sum%C3%A9%20%281%29.txt",
    );

    // Authenticated reads need a token.
    const anonymous = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`);
    assertEquals(anonymous.status, 401);
    await anonymous.body?.cancel();

    const config = await server.request("GET", `${CLIENT_V1}/config`, { token: bob.accessToken });
    assertEquals(config.body, { "m.upload.size": 52_428_800 });
    const legacyConfig = await server.request("GET", "/_matrix/media/v3/config", {
      token: bob.accessToken,
    });
    assertEquals(legacyConfig.body, { "m.upload.size": 52_428_800 });

    // Unknown media.
    const missing = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/nosuchmedia`, {
      token: bob.accessToken,
    });
    assertEquals([missing.status, (await missing.json()).errcode], [404, "M_NOT_FOUND"]);
  } finally {
    server.close();
  }
});

Deno.test("media: a 5 MB streamed upload comes back byte for byte, stored in 60 KiB chunks", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bytes = randomBytes(5 * 1024 * 1024 + 123);
    // No Content-Length: a chunked body, counted as it streams.
    const res = await raw(server, "POST", "/_matrix/media/v3/upload?filename=big.bin", {
      token: alice.accessToken,
      body: streamOf(bytes, 50_000),
      headers: { "content-type": "application/octet-stream" },
    });
    const { content_uri } = await res.json();
    const id = mediaIdOf(content_uri);
    const meta = (await server.kv.get<{ uploadId: string; size: number; sha256: string }>(
      mediaKeys.meta(SERVER, id),
    )).value!;
    assertEquals(meta.size, bytes.byteLength);
    const expectedSha = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    assertEquals(meta.sha256, expectedSha);
    const sizes: number[] = [];
    for await (
      const e of server.kv.list<Uint8Array>({ prefix: mediaKeys.chunkPrefix(meta.uploadId) })
    ) {
      sizes.push(e.value.byteLength);
    }
    assertEquals(sizes.length, Math.ceil(bytes.byteLength / MEDIA_CHUNK_BYTES));
    assert(sizes.slice(0, -1).every((s) => s === MEDIA_CHUNK_BYTES));
    assertEquals(await count(server.kv, ["mediaupload_pending"]), 0);
    assertEquals(await server.deps.media.usage(alice.userId), bytes.byteLength);

    const download = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`, {
      token: alice.accessToken,
    });
    assertEquals(download.status, 200);
    assertEquals(download.headers.get("content-disposition"), "attachment; filename=big.bin");
    const back = new Uint8Array(await download.arrayBuffer());
    assertEquals(back.byteLength, bytes.byteLength);
    assert(back.every((b, i) => b === bytes[i]), "bytes differ");
  } finally {
    server.close();
  }
});

Deno.test("media: asynchronous create then PUT, by the creator only, once", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const created = await server.request("POST", "/_matrix/media/v1/create", {
      token: alice.accessToken,
    });
    assertEquals(created.status, 200);
    assert(created.body.unused_expires_at > Date.now());
    const id = mediaIdOf(created.body.content_uri);
    const put = (token: string, body: string) =>
      raw(server, "PUT", `/_matrix/media/v3/upload/${SERVER}/${id}?filename=a.txt`, {
        token,
        body,
        headers: { "content-type": "text/plain" },
      });

    // Not there until uploaded.
    const early = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}?timeout_ms=0`, {
      token: alice.accessToken,
    });
    assertEquals([early.status, (await early.json()).errcode], [504, "M_NOT_YET_UPLOADED"]);

    const byBob = await put(bob.accessToken, "bob's");
    assertEquals([byBob.status, (await byBob.json()).errcode], [403, "M_FORBIDDEN"]);
    const byAlice = await put(alice.accessToken, "alice's");
    assertEquals([byAlice.status, await byAlice.json()], [200, {}]);
    const again = await put(alice.accessToken, "again");
    assertEquals([again.status, (await again.json()).errcode], [409, "M_CANNOT_OVERWRITE_MEDIA"]);

    const res = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`, {
      token: bob.accessToken,
    });
    assertEquals(await res.text(), "alice's");

    // Never created, or another server's ID: 404.
    const unknown = await put(alice.accessToken, "x");
    await unknown.body?.cancel();
    const other = await raw(server, "PUT", `/_matrix/media/v3/upload/${SERVER}/neverCreated`, {
      token: alice.accessToken,
      body: "x",
    });
    assertEquals([other.status, (await other.json()).errcode], [404, "M_NOT_FOUND"]);

    // At most 5 reservations wait per user.
    for (let i = 0; i < 5; i++) {
      const ok = await server.request("POST", "/_matrix/media/v1/create", {
        token: bob.accessToken,
      });
      assertEquals(ok.status, 200);
    }
    const sixth = await server.request("POST", "/_matrix/media/v1/create", {
      token: bob.accessToken,
    });
    assertEquals([sixth.status, sixth.body.errcode], [429, "M_LIMIT_EXCEEDED"]);
  } finally {
    server.close();
  }
});

Deno.test("media: over the size limit or the quota is M_TOO_LARGE and stores nothing", async () => {
  const server = await startTestServer({
    TESSERA_MEDIA_MAX_UPLOAD_BYTES: String(200 * 1024),
    TESSERA_MEDIA_QUOTA_BYTES: String(300 * 1024),
  }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const config = await server.request("GET", `${CLIENT_V1}/config`, { token: alice.accessToken });
    assertEquals(config.body, { "m.upload.size": 200 * 1024 });

    // Declared too large: refused before the body is read.
    const declared = await raw(server, "POST", "/_matrix/media/v3/upload", {
      token: alice.accessToken,
      body: streamOf(randomBytes(1024)),
      headers: { "content-length": String(200 * 1024 + 1) },
    });
    assertEquals([declared.status, (await declared.json()).errcode], [413, "M_TOO_LARGE"]);
    // A chunked body that turns out too large, after some chunks were committed.
    const streamed = await raw(server, "POST", "/_matrix/media/v3/upload", {
      token: alice.accessToken,
      body: streamOf(randomBytes(1024 * 1024)),
    });
    assertEquals([streamed.status, (await streamed.json()).errcode], [413, "M_TOO_LARGE"]);
    await assertNothingStored(server.kv);

    // The quota: 200 KiB fits, another 150 KiB would pass 300 KiB.
    await upload(server, alice.accessToken, randomBytes(200 * 1024));
    const over = await raw(server, "POST", "/_matrix/media/v3/upload", {
      token: alice.accessToken,
      body: randomBytes(150 * 1024),
    });
    assertEquals([over.status, (await over.json()).errcode], [413, "M_TOO_LARGE"]);
    assertEquals(await server.deps.media.usage(alice.userId), 200 * 1024);
    assertEquals(await count(server.kv, ["mediaid_meta"]), 1);
    assertEquals(
      await count(server.kv, ["mediaid_chunk"]),
      Math.ceil(200 * 1024 / MEDIA_CHUNK_BYTES),
    );
    assertEquals(await count(server.kv, ["userid_mediaid", alice.userId]), 1);
    // Another user has a quota of their own.
    const bob = await registerUser(server, "bob");
    await upload(server, bob.accessToken, randomBytes(150 * 1024));
  } finally {
    server.close();
  }
});

Deno.test("media: a body longer or shorter than its Content-Length, or cut off, is 400 and invisible", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const body = randomBytes(2 * 1024 * 1024);
    for (const claimed of [1024 * 1024, 3 * 1024 * 1024]) {
      const res = await raw(server, "POST", "/_matrix/media/v3/upload", {
        token: alice.accessToken,
        body: streamOf(body),
        headers: { "content-length": String(claimed) },
      });
      assertEquals([res.status, (await res.json()).errcode], [400, "M_INVALID_PARAM"]);
    }
    // The connection breaks after 1.5 MB (several chunk commits already made).
    let sent = 0;
    const truncated = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 1.5 * 1024 * 1024) return controller.error(new Error("connection reset"));
        controller.enqueue(randomBytes(64 * 1024));
        sent += 64 * 1024;
      },
    });
    const cut = await raw(server, "POST", "/_matrix/media/v3/upload", {
      token: alice.accessToken,
      body: truncated,
    });
    assertEquals([cut.status, (await cut.json()).errcode], [400, "M_INVALID_PARAM"]);
    const badLength = await raw(server, "POST", "/_matrix/media/v3/upload", {
      token: alice.accessToken,
      body: "abc",
      headers: { "content-length": "three" },
    });
    assertEquals(badLength.status, 400);
    await badLength.body?.cancel();
    await assertNothingStored(server.kv);
  } finally {
    server.close();
  }
});

Deno.test("media: media IDs and server names that could traverse are refused before any read", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const mxc = await upload(server, alice.accessToken, new TextEncoder().encode("x"));
    const id = mediaIdOf(mxc);
    for (
      const path of [
        `${CLIENT_V1}/download/${SERVER}/..%2F..%2Fetc%2Fpasswd`,
        `${CLIENT_V1}/download/${SERVER}/${id}%2F..`,
        `${CLIENT_V1}/download/${SERVER}/${"a".repeat(256)}`,
        `/_matrix/media/v3/download/${SERVER}/%2E%2E%2F${id}`,
      ]
    ) {
      const res = await raw(server, "GET", path, { token: alice.accessToken });
      assertEquals([res.status, (await res.json()).errcode], [404, "M_NOT_FOUND"], path);
    }
    // A literal `..` segment is resolved away by URL parsing before routing: no route at all.
    const dots = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/%2E%2E`, {
      token: alice.accessToken,
    });
    assertEquals(dots.status, 404);
    await dots.body?.cancel();
    const badServer = await raw(server, "GET", `${CLIENT_V1}/download/bad%20server/${id}`, {
      token: alice.accessToken,
    });
    assertEquals([badServer.status, (await badServer.json()).errcode], [400, "M_INVALID_PARAM"]);
    const put = await raw(server, "PUT", `/_matrix/media/v3/upload/${SERVER}/..%2Fx`, {
      token: alice.accessToken,
      body: "x",
    });
    assertEquals(put.status, 404);
    await put.body?.cancel();
  } finally {
    server.close();
  }
});

Deno.test("media: SVG with a script is served as a sandboxed attachment", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const svg = new TextEncoder().encode(
      '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>',
    );
    const id = mediaIdOf(await upload(server, alice.accessToken, svg, "image/svg+xml", "x.svg"));
    const res = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`, {
      token: alice.accessToken,
    });
    await res.body?.cancel();
    assertEquals(res.headers.get("content-disposition"), "attachment; filename=x.svg");
    assertEquals(res.headers.get("content-type"), "image/svg+xml; charset=UTF-8");
    const csp = res.headers.get("content-security-policy")!;
    assert(csp.startsWith("sandbox;") && csp.includes("script-src 'none'"), csp);
    assertEquals(res.headers.get("x-content-type-options"), "nosniff");
    // HTML too.
    const html = await upload(server, alice.accessToken, svg, "text/html");
    const page = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${mediaIdOf(html)}`, {
      token: alice.accessToken,
    });
    await page.body?.cancel();
    assertEquals(page.headers.get("content-disposition"), "attachment");
  } finally {
    server.close();
  }
});

Deno.test("media: legacy unauthenticated downloads follow TESSERA_MEDIA_LEGACY", async () => {
  const legacyGet = (server: Server, id: string) =>
    raw(server, "GET", `/_matrix/media/v3/download/${SERVER}/${id}`);

  // frozen (default): media stored after the freeze is not served; before it, it is.
  const kv = await Deno.openKv(":memory:");
  const frozen = await startTestServer({}, FAST_HASHING, kv);
  try {
    const alice = await registerUser(frozen, "alice");
    const id = mediaIdOf(await upload(frozen, alice.accessToken, new TextEncoder().encode("new")));
    const res = await legacyGet(frozen, id);
    assertEquals([res.status, (await res.json()).errcode], [404, "M_NOT_FOUND"]);
    // Stored before the freeze (a database whose freeze came later): served without a token.
    await kv.set(mediaKeys.legacyFreeze(), Date.now() + 60_000);
    const old = await legacyGet(frozen, id);
    assertEquals([old.status, await old.text()], [200, "new"]);
    assertEquals(old.headers.get("x-content-type-options"), "nosniff");
    const r0 = await raw(frozen, "GET", `/_matrix/media/r0/download/${SERVER}/${id}/f.txt`);
    assertEquals([r0.status, r0.headers.get("content-disposition")], [
      200,
      "attachment; filename=f.txt",
    ]);
    await r0.body?.cancel();
  } finally {
    frozen.close();
    kv.close();
  }

  for (const [mode, status] of [["on", 200], ["off", 404]] as const) {
    const server = await startTestServer({ TESSERA_MEDIA_LEGACY: mode }, FAST_HASHING);
    try {
      const alice = await registerUser(server, "alice");
      const id = mediaIdOf(await upload(server, alice.accessToken, new TextEncoder().encode("m")));
      const res = await legacyGet(server, id);
      assertEquals(res.status, status, mode);
      await res.body?.cancel();
    } finally {
      server.close();
    }
  }
});

Deno.test("media: quarantined media is served to no one; only administrators quarantine", async () => {
  const server = await startTestServer({
    TESSERA_ADMINS: "@root:example.org:8448",
    TESSERA_MEDIA_LEGACY: "on",
  }, FAST_HASHING);
  try {
    const root = await registerUser(server, "root");
    const alice = await registerUser(server, "alice");
    const id = mediaIdOf(await upload(server, alice.accessToken, new TextEncoder().encode("bad")));
    const quarantine = (token: string, mediaId = id, action = "quarantine") =>
      server.request("POST", `/_synapse/admin/v1/media/${action}/${SERVER}/${mediaId}`, { token });

    assertEquals((await quarantine(alice.accessToken)).status, 403);
    assertEquals((await quarantine(root.accessToken, "nosuchmedia")).status, 404);
    assertEquals((await quarantine(root.accessToken)).status, 200);
    for (
      const path of [
        `${CLIENT_V1}/download/${SERVER}/${id}`,
        `/_matrix/media/v3/download/${SERVER}/${id}`,
      ]
    ) {
      const res = await raw(server, "GET", path, { token: alice.accessToken });
      assertEquals([res.status, (await res.json()).errcode], [404, "M_NOT_FOUND"], path);
    }
    assertEquals((await quarantine(root.accessToken, id, "unquarantine")).status, 200);
    const back = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}`, {
      token: alice.accessToken,
    });
    assertEquals(await back.text(), "bad");
  } finally {
    server.close();
  }
});

Deno.test("media: guests read media and the config but may not upload", async () => {
  const server = await startTestServer({ TESSERA_GUEST_ACCESS: "on" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const id = mediaIdOf(await upload(server, alice.accessToken, new TextEncoder().encode("hi")));
    const guest = await server.request("POST", "/_matrix/client/v3/register?kind=guest", {
      body: {},
    });
    const token = guest.body.access_token;
    const res = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${id}/hi.txt`, { token });
    assertEquals([res.status, await res.text()], [200, "hi"]);
    const config = await server.request("GET", `${CLIENT_V1}/config`, { token });
    assertEquals(config.status, 200);
    const up = await raw(server, "POST", "/_matrix/media/v3/upload", { token, body: "x" });
    assertEquals([up.status, (await up.json()).errcode], [403, "M_GUEST_ACCESS_FORBIDDEN"]);
  } finally {
    server.close();
  }
});

Deno.test("media: a download of a created but not yet uploaded ID waits for it, or answers 504", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const created = await server.request("POST", "/_matrix/media/v1/create", {
      token: alice.accessToken,
    });
    const id = mediaIdOf(created.body.content_uri);
    const path = `${CLIENT_V1}/download/${SERVER}/${id}`;
    const now = await raw(server, "GET", `${path}?timeout_ms=0`, { token: alice.accessToken });
    assertEquals([now.status, (await now.json()).errcode], [504, "M_NOT_YET_UPLOADED"]);
    const bad = await raw(server, "GET", `${path}?timeout_ms=soon`, { token: alice.accessToken });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();

    // A reader waiting (up to a minute) gets the bytes once the PUT lands.
    const waiting = raw(server, "GET", `${path}?timeout_ms=60000`, { token: alice.accessToken });
    const put = await raw(server, "PUT", `/_matrix/media/v3/upload/${SERVER}/${id}`, {
      token: alice.accessToken,
      body: "late",
    });
    assertEquals(put.status, 200);
    await put.body?.cancel();
    const res = await waiting;
    assertEquals([res.status, await res.text()], [200, "late"]);
  } finally {
    server.close();
  }
});

Deno.test("media: an administrator quarantines every media item a room's events point at", async () => {
  const server = await startTestServer({ TESSERA_ADMINS: "@root:example.org:8448" }, FAST_HASHING);
  try {
    const root = await registerUser(server, "root");
    const alice = await registerUser(server, "alice");
    const image = await upload(server, alice.accessToken, new TextEncoder().encode("img"));
    const thumb = await upload(server, alice.accessToken, new TextEncoder().encode("thumb"));
    const elsewhere = await upload(server, alice.accessToken, new TextEncoder().encode("keep"));
    const room = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: {},
    });
    const roomId = room.body.room_id;
    const sent = await server.request(
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`,
      {
        token: alice.accessToken,
        body: { msgtype: "m.image", body: "a.png", url: image, info: { thumbnail_url: thumb } },
      },
    );
    assertEquals(sent.status, 200);
    const path = `/_synapse/admin/v1/room/${encodeURIComponent(roomId)}/media/quarantine`;
    const refused = await server.request("POST", path, { token: alice.accessToken, body: {} });
    assertEquals(refused.status, 403);
    const res = await server.request("POST", path, { token: root.accessToken, body: {} });
    assertEquals([res.status, res.body], [200, { num_quarantined: 2 }]);
    const get = async (mxc: string) => {
      const r = await raw(server, "GET", `${CLIENT_V1}/download/${SERVER}/${mediaIdOf(mxc)}`, {
        token: alice.accessToken,
      });
      await r.body?.cancel();
      return r.status;
    };
    assertEquals([await get(image), await get(thumb), await get(elsewhere)], [404, 404, 200]);
  } finally {
    server.close();
  }
});

Deno.test("media: over real HTTP a chunked upload past the limit is cut off, not read to its end", async () => {
  const server = await startTestServer({ TESSERA_MEDIA_MAX_UPLOAD_BYTES: String(1024 * 1024) });
  const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, server.app.fetch);
  try {
    const alice = await registerUser(server, "alice");
    const { port } = http.addr as Deno.NetAddr;
    let pulled = 0;
    const piece = new Uint8Array(64 * 1024);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= 1024 * 1024 * 1024) return controller.close();
        pulled += piece.byteLength;
        controller.enqueue(piece.slice());
      },
    });
    const res = await fetch(`http://127.0.0.1:${port}/_matrix/media/v3/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice.accessToken}` },
      body,
    });
    assertEquals([res.status, (await res.json()).errcode], [413, "M_TOO_LARGE"]);
    await body.cancel().catch(() => {});
    assert(pulled < 64 * 1024 * 1024, `the client was made to send ${pulled} bytes`);
    await assertNothingStored(server.kv);
  } finally {
    await http.shutdown();
    server.close();
  }
});
