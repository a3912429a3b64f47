/**
 * Thumbnails over HTTP: each format in and the spec's sizes out, crop and scale, animated on
 * request, decompression bombs and corrupt images refused with Matrix errors (never a 500),
 * thumbnails stored once and served from the store, the legacy paths per TESSERA_MEDIA_LEGACY.
 */
import { assert, assertEquals } from "../../assert.ts";
import { startTestServer } from "../test_server.ts";
import { registerUser } from "../client_harness.ts";
import { probeImage } from "../../../domain/media/image_probe.ts";
import { splitAnimatedWebp } from "../../../domain/media/webp_container.ts";
import {
  animatedWebpOf,
  gifOf,
  jpegOf,
  pngBomb,
  pngOf,
  webpOf,
} from "../../domain/media/image_fixtures.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;
const SERVER = "example.org:8448";

async function upload(server: Server, token: string, bytes: Uint8Array, type: string) {
  const res = await server.app.request("/_matrix/media/v3/upload", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": type },
    body: bytes.slice(),
  });
  const body = await res.json();
  assertEquals(res.status, 200, JSON.stringify(body));
  return (body.content_uri as string).split("/").pop()!;
}

async function thumbnail(server: Server, token: string | null, path: string) {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await server.app.request(path, { headers });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const json = () => JSON.parse(new TextDecoder().decode(bytes));
  return { status: res.status, headers: res.headers, bytes, json };
}

const v1 = (mediaId: string, query: string) =>
  `/_matrix/client/v1/media/thumbnail/${SERVER}/${mediaId}?${query}`;

async function count(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

Deno.test("thumbnail: JPEG, PNG, GIF and WebP in; crop and scale sizes out, with safety headers", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const sources: [string, Uint8Array, string][] = [
      ["image/jpeg", await jpegOf(1000, 500), "image/jpeg"],
      ["image/png", await pngOf(1000, 500), "image/png"],
      ["image/gif", gifOf(1000, 500, 1), "image/png"],
      ["image/webp", await webpOf(1000, 500), "image/png"],
    ];
    for (const [type, bytes, outType] of sources) {
      const id = await upload(server, alice.accessToken, bytes, type);
      const crop = await thumbnail(
        server,
        alice.accessToken,
        v1(id, "width=30&height=30&method=crop"),
      );
      assertEquals(crop.status, 200, type);
      assertEquals(crop.headers.get("content-type"), outType, type);
      assertEquals(crop.headers.get("x-content-type-options"), "nosniff");
      assert(crop.headers.get("content-security-policy")?.startsWith("sandbox"));
      const ext = outType === "image/jpeg" ? "jpg" : "png";
      const disposition = crop.headers.get("content-disposition") ?? "";
      assert(
        disposition.startsWith("inline") && disposition.includes(`thumbnail.${ext}`),
        disposition,
      );
      const cropped = probeImage(crop.bytes);
      assertEquals([cropped?.width, cropped?.height], [32, 32], type);
      // Scale fits 1000x500 into the smallest size at least 300x200: 320x240.
      const scale = await thumbnail(
        server,
        alice.accessToken,
        v1(id, "width=300&height=200&method=scale"),
      );
      assertEquals(scale.status, 200, type);
      const scaled = probeImage(scale.bytes);
      assertEquals([scaled?.width, scaled?.height], [320, 160], type);
      // method is optional: scale.
      const plain = await thumbnail(server, alice.accessToken, v1(id, "width=640&height=480"));
      assertEquals([probeImage(plain.bytes)?.width, probeImage(plain.bytes)?.height], [640, 320]);
    }
    // A small image is never upscaled.
    const small = await upload(server, alice.accessToken, await pngOf(20, 10), "image/png");
    const big = await thumbnail(server, alice.accessToken, v1(small, "width=800&height=600"));
    assertEquals([probeImage(big.bytes)?.width, probeImage(big.bytes)?.height], [20, 10]);
  } finally {
    server.close();
  }
});

Deno.test("thumbnail: animated GIF and WebP are animated (WebP) only with animated=true", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    for (
      const [type, bytes] of [
        ["image/gif", gifOf(200, 100, 3)],
        ["image/webp", await animatedWebpOf(200, 100, 3)],
      ] as const
    ) {
      const id = await upload(server, alice.accessToken, bytes, type);
      const moving = await thumbnail(
        server,
        alice.accessToken,
        v1(id, "width=96&height=96&method=scale&animated=true"),
      );
      assertEquals(moving.status, 200);
      assertEquals(moving.headers.get("content-type"), "image/webp", type);
      const animation = splitAnimatedWebp(moving.bytes);
      assertEquals([animation?.frames.length, animation?.width, animation?.height], [3, 96, 48]);
      for (const query of ["animated=false", ""]) {
        const still = await thumbnail(
          server,
          alice.accessToken,
          v1(id, `width=96&height=96&method=scale&${query}`),
        );
        assertEquals(still.headers.get("content-type"), "image/png", `${type} ${query}`);
        assertEquals(probeImage(still.bytes)?.animated, false);
      }
    }
    // animated=true on a JPEG behaves as animated=false.
    const jpeg = await upload(server, alice.accessToken, await jpegOf(100, 100), "image/jpeg");
    const still = await thumbnail(
      server,
      alice.accessToken,
      v1(jpeg, "width=32&height=32&animated=true"),
    );
    assertEquals(still.headers.get("content-type"), "image/jpeg");
  } finally {
    server.close();
  }
});

Deno.test("thumbnail: generated once, stored, and served from the store (also to concurrent requests)", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const id = await upload(server, alice.accessToken, await pngOf(400, 300), "image/png");
    const prefix = ["mediaid_thumbnail", SERVER, id];
    const path = v1(id, "width=96&height=96&method=crop");
    const [a, b] = await Promise.all([
      thumbnail(server, alice.accessToken, path),
      thumbnail(server, bob.accessToken, path),
    ]);
    assertEquals([a.status, b.status], [200, 200]);
    assertEquals(a.bytes, b.bytes);
    assertEquals(await count(server.kv, prefix), 1);
    const stored = (await server.deps.media.listDerived(SERVER, id))[0];
    // A later request for a size mapping onto the same box is the stored thumbnail.
    const later = await thumbnail(
      server,
      bob.accessToken,
      v1(id, "width=90&height=64&method=crop"),
    );
    assertEquals(later.bytes, a.bytes);
    assertEquals(await count(server.kv, prefix), 1);
    assertEquals((await server.deps.media.listDerived(SERVER, id))[0].uploadId, stored.uploadId);
    // Another method or box is another thumbnail.
    await thumbnail(server, bob.accessToken, v1(id, "width=96&height=96&method=scale"));
    assertEquals(await count(server.kv, prefix), 2);
    // Quarantine hides the stored thumbnails too.
    assert(await server.deps.media.quarantine(SERVER, id));
    const hidden = await thumbnail(server, bob.accessToken, path);
    assertEquals([hidden.status, hidden.json().errcode], [404, "M_NOT_FOUND"]);
  } finally {
    server.close();
  }
});

Deno.test("thumbnail: a decompression bomb is 413 M_TOO_LARGE before decoding, and stores nothing", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const id = await upload(server, alice.accessToken, pngBomb(50000, 50000), "image/png");
    const res = await thumbnail(
      server,
      alice.accessToken,
      v1(id, "width=32&height=32&method=crop"),
    );
    assertEquals([res.status, res.json().errcode], [413, "M_TOO_LARGE"]);
    // The same header in front of 2 MB of data is refused from its first chunks.
    const bomb = pngBomb(50000, 50000);
    const padded = new Uint8Array(bomb.length + 2 * 1024 * 1024);
    padded.set(bomb);
    const big = await upload(server, alice.accessToken, padded, "image/png");
    const refused = await thumbnail(server, alice.accessToken, v1(big, "width=32&height=32"));
    assertEquals([refused.status, refused.json().errcode], [413, "M_TOO_LARGE"]);
    assertEquals(await count(server.kv, ["mediaid_thumbnail"]), 0);
  } finally {
    server.close();
  }
  // The bound is TESSERA_MEDIA_MAX_PIXELS.
  const strict = await startTestServer({ TESSERA_MEDIA_MAX_PIXELS: "10000" });
  try {
    const alice = await registerUser(strict, "alice");
    const id = await upload(strict, alice.accessToken, await jpegOf(101, 100), "image/jpeg");
    const res = await thumbnail(strict, alice.accessToken, v1(id, "width=32&height=32"));
    assertEquals([res.status, res.json().errcode], [413, "M_TOO_LARGE"]);
  } finally {
    strict.close();
  }
});

Deno.test("thumbnail: corrupt images, non-images, bad parameters and unknown media are 4xx, never 500", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const png = await pngOf(64, 64);
    const garbled = png.slice();
    garbled.fill(0x55, 40);
    const corrupt = await upload(server, token, garbled, "image/png");
    const text = await upload(server, token, new TextEncoder().encode("hello"), "text/plain");
    const fakeImage = await upload(
      server,
      token,
      new TextEncoder().encode("<svg/>"),
      "image/svg+xml",
    );
    const good = await upload(server, token, png, "image/png");
    const cases: [string, number, string][] = [
      [v1(corrupt, "width=32&height=32"), 400, "M_UNKNOWN"],
      [v1(text, "width=32&height=32"), 400, "M_UNKNOWN"],
      [v1(fakeImage, "width=32&height=32"), 400, "M_UNKNOWN"],
      [v1("unknownMediaId", "width=32&height=32"), 404, "M_NOT_FOUND"],
      [
        `/_matrix/client/v1/media/thumbnail/${SERVER}/..%2F..%2Fetc%2Fpasswd?width=32&height=32`,
        404,
        "M_NOT_FOUND",
      ],
      [
        `/_matrix/client/v1/media/thumbnail/${SERVER}/a%2F..?width=32&height=32`,
        404,
        "M_NOT_FOUND",
      ],
      [
        `/_matrix/client/v1/media/thumbnail/bad%20server:99999/${good}?width=32&height=32`,
        400,
        "M_INVALID_PARAM",
      ],
      [v1(good, "height=32"), 400, "M_MISSING_PARAM"],
      [v1(good, "width=32"), 400, "M_MISSING_PARAM"],
      [v1(good, "width=-1&height=32"), 400, "M_INVALID_PARAM"],
      [v1(good, "width=0&height=32"), 400, "M_INVALID_PARAM"],
      [v1(good, "width=1.5&height=32"), 400, "M_INVALID_PARAM"],
      [v1(good, "width=32&height=32&method=zoom"), 400, "M_INVALID_PARAM"],
      [v1(good, "width=32&height=32&animated=yes"), 400, "M_INVALID_PARAM"],
    ];
    for (const [path, status, errcode] of cases) {
      const res = await thumbnail(server, token, path);
      assertEquals([res.status, res.json().errcode], [status, errcode], path);
    }
    assertEquals(await count(server.kv, ["mediaid_thumbnail"]), 0);
    const unauthenticated = await thumbnail(server, null, v1(good, "width=32&height=32"));
    assertEquals([unauthenticated.status, unauthenticated.json().errcode], [
      401,
      "M_MISSING_TOKEN",
    ]);
  } finally {
    server.close();
  }
});

Deno.test("thumbnail: legacy unauthenticated paths follow TESSERA_MEDIA_LEGACY", async () => {
  for (const [mode, status] of [["on", 200], ["off", 404], ["frozen", 404]] as const) {
    const server = await startTestServer({ TESSERA_MEDIA_LEGACY: mode });
    try {
      const alice = await registerUser(server, "alice");
      const id = await upload(server, alice.accessToken, await pngOf(64, 64), "image/png");
      for (const version of ["v3", "r0"]) {
        const res = await thumbnail(
          server,
          null,
          `/_matrix/media/${version}/thumbnail/${SERVER}/${id}?width=32&height=32&method=crop`,
        );
        // frozen: media uploaded after the freeze (this database's first start) is not served.
        assertEquals(res.status, status, `${mode} ${version}`);
        if (status === 200) assertEquals(probeImage(res.bytes)?.width, 32);
      }
    } finally {
      server.close();
    }
  }
});

Deno.test("thumbnail: remote media is fetched once, cached, and thumbnailed locally", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const jpeg = await jpegOf(640, 480);
    const fetched: string[] = [];
    server.deps.media.setRemoteMedia({
      fetch: (origin, mediaId) => {
        fetched.push(`${origin}/${mediaId}`);
        if (mediaId === "remoteBomb") {
          return Promise.resolve({
            contentType: "image/png",
            stream: new Response(pngBomb(50000, 50000).slice()).body!,
          });
        }
        if (mediaId !== "remotePhoto") return Promise.resolve(null);
        return Promise.resolve({
          contentType: "image/jpeg",
          fileName: "photo.jpg",
          stream: new Response(jpeg.slice()).body!,
        });
      },
    });
    const path = (id: string, query = "&method=crop") =>
      `/_matrix/client/v1/media/thumbnail/remote.example/${id}?width=96&height=96${query}`;
    const first = await thumbnail(server, alice.accessToken, path("remotePhoto"));
    assertEquals(first.status, 200);
    assertEquals(first.headers.get("content-type"), "image/jpeg");
    assertEquals([probeImage(first.bytes)?.width, probeImage(first.bytes)?.height], [96, 96]);
    const again = await thumbnail(server, alice.accessToken, path("remotePhoto", "&method=scale"));
    assertEquals([probeImage(again.bytes)?.width, probeImage(again.bytes)?.height], [96, 72]);
    // The original was fetched once and is cached as remote media.
    assertEquals(fetched, ["remote.example/remotePhoto"]);
    assertEquals((await server.deps.media.meta("remote.example", "remotePhoto"))?.remote, true);
    // allow_remote=false never fetches; an origin without the media is 404.
    const local = await thumbnail(
      server,
      alice.accessToken,
      path("other", "&method=crop&allow_remote=false"),
    );
    assertEquals(local.status, 404);
    assertEquals(fetched.length, 1);
    const missing = await thumbnail(server, alice.accessToken, path("other"));
    assertEquals([missing.status, missing.json().errcode], [404, "M_NOT_FOUND"]);
    // Remote content too large to thumbnail is the spec's 502 M_TOO_LARGE.
    const bomb = await thumbnail(server, alice.accessToken, path("remoteBomb"));
    assertEquals([bomb.status, bomb.json().errcode], [502, "M_TOO_LARGE"]);
  } finally {
    server.close();
  }
});

Deno.test("thumbnail: media reserved by /create is waited for up to timeout_ms, then thumbnailed", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const created = await server.request("POST", "/_matrix/media/v1/create", {
      token: alice.accessToken,
    });
    assertEquals(created.status, 200);
    const id = (created.body.content_uri as string).split("/").pop()!;
    const notYet = await thumbnail(
      server,
      alice.accessToken,
      v1(id, "width=32&height=32&timeout_ms=0"),
    );
    assertEquals([notYet.status, notYet.json().errcode], [504, "M_NOT_YET_UPLOADED"]);
    // A request waiting while the upload lands gets the thumbnail of it.
    const waiting = thumbnail(
      server,
      alice.accessToken,
      v1(id, "width=32&height=32&timeout_ms=30000"),
    );
    const put = await server.app.request(`/_matrix/media/v3/upload/${SERVER}/${id}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${alice.accessToken}`, "content-type": "image/png" },
      body: (await pngOf(64, 64)).slice(),
    });
    assertEquals(put.status, 200);
    const res = await waiting;
    assertEquals(res.status, 200);
    assertEquals(probeImage(res.bytes)?.width, 32);
    // An ID never created is not waited for.
    const never = await thumbnail(
      server,
      alice.accessToken,
      v1("neverCreated", "width=32&height=32"),
    );
    assertEquals(never.status, 404);
  } finally {
    server.close();
  }
});
