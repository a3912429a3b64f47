import { assert, assertEquals } from "../../assert.ts";
import { startTestServer } from "../test_server.ts";
import { registerUser } from "../client_harness.ts";
import { pngOf } from "../../domain/media/image_fixtures.ts";
import { createTestCa } from "../../federation/test_certificates.ts";

/** A local web site: pages by path, every request recorded. */
function site(pages: Record<string, () => Response>) {
  const hits: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    hits.push(path);
    return pages[path]?.() ?? new Response("not found", { status: 404 });
  });
  return { server, hits, base: `http://127.0.0.1:${server.addr.port}` };
}

const previewPath = (url: string, ts?: number) =>
  `/_matrix/client/v1/media/preview_url?url=${encodeURIComponent(url)}${
    ts === undefined ? "" : `&ts=${ts}`
  }`;

Deno.test("preview_url reads a page's OpenGraph and stores its image as downloadable media", async () => {
  const png = new Uint8Array(await pngOf(64, 48));
  const web = site({
    "/article": () =>
      new Response(
        `<html><head><title>Fallback</title>
        <meta property="og:title" content="An article">
        <meta property="og:description" content="About things.">
        <meta property="og:image" content="/cover.png"></head><body></body></html>`,
        { headers: { "content-type": "text/html; charset=utf-8" } },
      ),
    "/cover.png": () => new Response(png.slice(), { headers: { "content-type": "image/png" } }),
    "/photo": () => Response.redirect(`http://127.0.0.1:${web.server.addr.port}/cover.png`, 302),
  });
  // A clock standing still: the cache is kept per hour, and an hour turning mid-test would
  // fetch the page again.
  const frozen = Date.now();
  const server = await startTestServer({ TESSERA_URL_PREVIEW_ALLOW_PRIVATE: "true" }, {
    now: () => frozen,
  });
  try {
    const alice = await registerUser(server, "alice");
    const res = await server.request("GET", previewPath(`${web.base}/article`), {
      token: alice.accessToken,
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body["og:title"], "An article");
    assertEquals(res.body["og:description"], "About things.");
    assertEquals(res.body["og:image:type"], "image/png");
    assertEquals(res.body["og:image:width"], 64);
    assertEquals(res.body["og:image:height"], 48);
    assertEquals(res.body["matrix:image:size"], png.length);
    const mxc = res.body["og:image"] as string;
    assert(mxc.startsWith("mxc://example.org:8448/"), mxc);

    const download = await server.app.request(
      `/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}`,
      { headers: { authorization: `Bearer ${alice.accessToken}` } },
    );
    assertEquals(download.status, 200);
    assertEquals(new Uint8Array(await download.arrayBuffer()), png);

    // The cache answers repeats, on the legacy path too, without asking the site again.
    const hitsBefore = web.hits.length;
    const again = await server.request(
      "GET",
      `/_matrix/media/v3/preview_url?url=${encodeURIComponent(`${web.base}/article`)}`,
      { token: alice.accessToken },
    );
    assertEquals(again.body, res.body);
    const old = await server.request("GET", previewPath(`${web.base}/article`, frozen), {
      token: alice.accessToken,
    });
    assertEquals(old.body, res.body);
    assertEquals(web.hits.length, hitsBefore);

    // An image URL, behind a redirect, previews as the image.
    const image = await server.request("GET", previewPath(`${web.base}/photo`), {
      token: alice.accessToken,
    });
    assertEquals(image.status, 200);
    assertEquals(image.body["og:image:width"], 64);
    assertEquals(image.body["og:title"], "cover.png");
  } finally {
    server.close();
    await web.server.shutdown();
  }
});

Deno.test("preview_url refuses private, loopback and link-local addresses after resolution", async () => {
  const web = site({ "/secret": () => new Response("<title>internal</title>") });
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const port = web.server.addr.port;
    for (
      const url of [
        `http://127.0.0.1:${port}/secret`,
        `http://localhost:${port}/secret`,
        `http://[::1]:${port}/secret`,
        `http://[::ffff:127.0.0.1]:${port}/secret`,
        "http://10.0.0.1/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
      ]
    ) {
      const res = await server.request("GET", previewPath(url), { token: alice.accessToken });
      assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"], url);
    }
    for (const url of ["file:///etc/passwd", "ftp://example.com/", "javascript:alert(1)", "x"]) {
      const res = await server.request("GET", previewPath(url), { token: alice.accessToken });
      assertEquals([res.status, res.body.errcode], [400, "M_INVALID_PARAM"], url);
    }
    assertEquals(web.hits, []);
  } finally {
    server.close();
    await web.server.shutdown();
  }
});

Deno.test("preview_url: oversize pages 413, failing sites 502, bad parameters 400, no token 401", async () => {
  const web = site({
    "/huge": () =>
      new Response(new Uint8Array(11 * 1024 * 1024), { headers: { "content-type": "text/html" } }),
    "/gone": () => new Response("gone", { status: 410 }),
  });
  const server = await startTestServer({
    TESSERA_URL_PREVIEW_ALLOW_PRIVATE: "true",
    TESSERA_GUEST_ACCESS: "on",
  });
  try {
    const alice = await registerUser(server, "alice");
    const get = (path: string) => server.request("GET", path, { token: alice.accessToken });
    const huge = await get(previewPath(`${web.base}/huge`));
    assertEquals([huge.status, huge.body.errcode], [413, "M_TOO_LARGE"]);
    const gone = await get(previewPath(`${web.base}/gone`));
    assertEquals([gone.status, gone.body.errcode], [502, "M_UNKNOWN"]);
    const missing = await get("/_matrix/client/v1/media/preview_url");
    assertEquals([missing.status, missing.body.errcode], [400, "M_MISSING_PARAM"]);
    for (const ts of ["soon", "1e12", "-5", ""]) {
      const bad = await get(`${previewPath(`${web.base}/gone`)}&ts=${ts}`);
      assertEquals([bad.status, bad.body.errcode], [400, "M_INVALID_PARAM"], ts);
    }
    const anonymous = await server.request("GET", previewPath(`${web.base}/gone`));
    assertEquals([anonymous.status, anonymous.body.errcode], [401, "M_MISSING_TOKEN"]);
    // Guests may not make the server fetch pages (Synapse's preview resource refuses them too).
    const guest = await server.request("POST", "/_matrix/client/v3/register?kind=guest", {
      body: {},
    });
    assertEquals(guest.status, 200);
    const asGuest = await server.request("GET", previewPath(`${web.base}/gone`), {
      token: guest.body.access_token,
    });
    assertEquals([asGuest.status, asGuest.body.errcode], [403, "M_GUEST_ACCESS_FORBIDDEN"]);
    assertEquals(web.hits.filter((p) => p === "/gone").length, 1);
  } finally {
    server.close();
    await web.server.shutdown();
  }
});

Deno.test("preview_url is rate limited per user", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    let limited: { status: number; body: Record<string, unknown> } | undefined;
    for (let i = 0; i < 40 && limited === undefined; i++) {
      const res = await server.request("GET", previewPath("http://10.0.0.1/"), {
        token: alice.accessToken,
      });
      if (res.status === 429) limited = res;
      else assertEquals(res.status, 403);
    }
    assert(limited !== undefined, "never limited");
    assertEquals(limited.body.errcode, "M_LIMIT_EXCEEDED");
    assert(typeof limited.body.retry_after_ms === "number");
  } finally {
    server.close();
  }
});

Deno.test("TESSERA_URL_PREVIEWS=off serves no preview_url; TESSERA_MEDIA_LEGACY=off drops the old paths", async () => {
  const off = await startTestServer({ TESSERA_URL_PREVIEWS: "off" });
  try {
    const alice = await registerUser(off, "alice");
    const res = await off.request("GET", previewPath("https://example.com/"), {
      token: alice.accessToken,
    });
    assertEquals([res.status, res.body.errcode], [404, "M_UNRECOGNIZED"]);
  } finally {
    off.close();
  }
  const noLegacy = await startTestServer({ TESSERA_MEDIA_LEGACY: "off" });
  try {
    const alice = await registerUser(noLegacy, "alice");
    for (const version of ["v3", "r0", "v1"]) {
      const res = await noLegacy.request(
        "GET",
        `/_matrix/media/${version}/preview_url?url=http%3A%2F%2F10.0.0.1%2F`,
        { token: alice.accessToken },
      );
      assertEquals([res.status, res.body.errcode], [404, "M_UNRECOGNIZED"], version);
    }
    const current = await noLegacy.request("GET", previewPath("http://10.0.0.1/"), {
      token: alice.accessToken,
    });
    assertEquals(current.status, 403);
  } finally {
    noLegacy.close();
  }
});

Deno.test("SyTest's preview: an HTTPS page signed by the harness CA, token in the query", async () => {
  // As tests/51media/20urlpreview.pl runs it: SyTest's own HTTPS server, whose CA the server
  // is given as TESSERA_FEDERATION_CA_FILE, a relative og:image, the legacy v3 path.
  const ca = await createTestCa();
  const leaf = await ca.issue({ dns: ["localhost"], ips: ["127.0.0.1"] });
  const caFile = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(caFile, ca.caPem);
  const png = new Uint8Array(await pngOf(279, 129));
  const web = Deno.serve(
    { port: 0, hostname: "127.0.0.1", cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/test.png"
        ? new Response(png.slice(), { headers: { "content-type": "image/png" } })
        : new Response(
          `<html prefix="og: http://ogp.me/ns#"><head><title>The Rock (1996)</title>
          <meta property="og:title" content="The Rock" />
          <meta property="og:type" content="video.movie" />
          <meta property="og:url" content="http://www.imdb.com/title/tt0117500/" />
          <meta property="og:image" content="test.png" /></head><body></body></html>`,
          { headers: { "content-type": "text/html" } },
        ),
  );
  const server = await startTestServer({
    TESSERA_URL_PREVIEW_ALLOW_PRIVATE: "true",
    TESSERA_FEDERATION_CA_FILE: caFile,
  });
  try {
    const alice = await registerUser(server, "alice");
    const url = `https://localhost:${web.addr.port}/test.html`;
    const res = await server.request(
      "GET",
      `/_matrix/media/v3/preview_url?url=${
        encodeURIComponent(url)
      }&access_token=${alice.accessToken}`,
    );
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body["og:title"], "The Rock");
    assertEquals(res.body["og:type"], "video.movie");
    assertEquals(res.body["og:url"], "http://www.imdb.com/title/tt0117500/");
    assertEquals(res.body["matrix:image:size"], png.length);
    assertEquals([res.body["og:image:width"], res.body["og:image:height"]], [279, 129]);
    assert(String(res.body["og:image"]).startsWith("mxc://"));
  } finally {
    server.close();
    await web.shutdown();
    await Deno.remove(caFile);
  }
});
