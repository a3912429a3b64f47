/**
 * Federation media: a user on B downloads A's media through B (fetched once over
 * `/_matrix/federation/v1/media/download`, cached, then served from B's store); the federation
 * endpoint's multipart answer and its refusals; the legacy fallback for servers without it; and
 * the adapter's handling of bad multipart answers and `Location` redirects.
 */
import { assert, assertEquals } from "../assert.ts";
import { withNetwork } from "./network_helpers.ts";
import type { Network } from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { createTestCa } from "./test_certificates.ts";
import { multipartBoundary, MultipartReader } from "../../domain/media/multipart.ts";
import { MediaService } from "../../domain/media/media_service.ts";
import { KvMediaStore } from "../../kv/media_store.ts";
import { FederationRemoteMedia } from "../../outbound/remote_media_client.ts";
import { fetchLocationStream } from "../../outbound/location_fetch.ts";
import { httpsRequestStream } from "../../outbound/federation_https.ts";
import type {
  FederationStreamRequest,
  FederationStreamResponse,
  FederationTransport,
} from "../../domain/ports/federation_transport.ts";
import { MatrixError } from "../../domain/errors.ts";
import { probeImage } from "../../domain/media/image_probe.ts";
import { pngOf } from "../domain/media/image_fixtures.ts";

const encoder = new TextEncoder();
const MEDIA_PATH = "/_matrix/federation/v1/media/download/";

/** Upload `bytes` as `user` on `server`; the mxc URI. */
async function upload(
  net: Network,
  server: string,
  user: RegisteredUser,
  bytes: Uint8Array,
  contentType: string,
  fileName?: string,
): Promise<string> {
  const query = fileName === undefined ? "" : `?filename=${encodeURIComponent(fileName)}`;
  const res = await net.servers[server].app.request(`/_matrix/media/v3/upload${query}`, {
    method: "POST",
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": contentType },
    body: bytes.slice(),
  });
  assertEquals(res.status, 200, await res.clone().text());
  return (await res.json()).content_uri;
}

/** An authenticated client download of `mxc` through `server`. */
function download(net: Network, server: string, user: RegisteredUser, mxc: string) {
  return net.servers[server].app.request(
    `/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}`,
    { headers: { authorization: `Bearer ${user.accessToken}` } },
  );
}

/** Federation media requests in the network log. */
const mediaRequests = (net: Network) =>
  net.log.filter((r) => r.path.startsWith("/_matrix/federation/v1/media/"));

Deno.test("a user on B downloads A's media: fetched once over federation, then from B's cache", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const bob = await net.servers["b.test"].register("bob");
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 31) % 256);
    const mxc = await upload(net, "a.test", alice, bytes, "image/png", "holiday photo.png");
    assert(mxc.startsWith("mxc://a.test/"), mxc);

    const first = await download(net, "b.test", bob, mxc);
    assertEquals(first.status, 200);
    assertEquals(first.headers.get("content-type"), "image/png");
    assertEquals(
      first.headers.get("content-disposition"),
      "inline; filename*=utf-8''holiday%20photo.png",
    );
    assert(first.headers.get("content-security-policy")?.startsWith("sandbox"));
    assertEquals(new Uint8Array(await first.arrayBuffer()), bytes);
    const fetched = mediaRequests(net);
    assertEquals(fetched.length, 1);
    assertEquals(fetched[0].origin, "b.test");
    assertEquals(fetched[0].destination, "a.test");

    // Cached: B answers again without asking A, even with A gone.
    net.setReachable("a.test", false);
    const again = await download(net, "b.test", bob, mxc);
    assertEquals(again.status, 200);
    assertEquals(new Uint8Array(await again.arrayBuffer()), bytes);
    assertEquals(mediaRequests(net).length, 1);
    const cached = await net.servers["b.test"].deps.media.meta("a.test", mxc.split("/").pop()!);
    assertEquals(cached?.remote, true);
    assertEquals(cached?.size, bytes.length);
  });
});

Deno.test("concurrent downloads of one remote item fetch it once; unknown remote media is 404", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const bob = await net.servers["b.test"].register("bob");
    const bytes = new Uint8Array(200_000).fill(5);
    const mxc = await upload(net, "a.test", alice, bytes, "application/pdf");
    const answers = await Promise.all(
      [1, 2, 3, 4].map(() => download(net, "b.test", bob, mxc)),
    );
    for (const answer of answers) {
      assertEquals(answer.status, 200);
      // Not safe inline: an attachment, even when it came from another server.
      assertEquals(answer.headers.get("content-disposition"), "attachment");
      assertEquals((await answer.arrayBuffer()).byteLength, bytes.length);
    }
    assertEquals(mediaRequests(net).length, 1);

    const missing = await download(net, "b.test", bob, "mxc://a.test/NoSuchMedia123");
    assertEquals(missing.status, 404);
    assertEquals((await missing.json()).errcode, "M_NOT_FOUND");
    // A remote server that cannot be reached is a 502, and nothing is cached.
    net.setReachable("a.test", false);
    const other = await upload(net, "a.test", alice, bytes, "image/png");
    const unreachable = await download(net, "b.test", bob, other);
    assertEquals(unreachable.status, 502);
    assertEquals(
      await net.servers["b.test"].deps.media.meta("a.test", other.split("/").pop()!),
      null,
    );
  });
});

/** A signed streamed GET from `origin` to `destination`, as a server would send it. */
function federationGet(net: Network, origin: string, destination: string, path: string) {
  return net.transportFor(origin).requestStream!({
    method: "GET",
    destination,
    path,
    maxResponseBytes: 10_000_000,
  });
}

Deno.test("the federation download endpoint answers multipart/mixed: {} then the bytes", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const svg = encoder.encode('<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>');
    const mxc = await upload(net, "a.test", alice, svg, "image/svg+xml", "pic.svg");
    const mediaId = mxc.split("/").pop()!;
    const response = await federationGet(net, "b.test", "a.test", `${MEDIA_PATH}${mediaId}`);
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("x-content-type-options"), "nosniff");
    const boundary = multipartBoundary(response.headers.get("content-type"));
    assert(boundary !== null, response.headers.get("content-type") ?? "no type");
    const reader = new MultipartReader(response.body, boundary);
    const metadata = (await reader.next())!;
    assertEquals(metadata.headers.get("content-type"), "application/json");
    assertEquals(JSON.parse(await new Response(metadata.body).text()), {});
    const media = (await reader.next())!;
    assertEquals(media.headers.get("content-type"), "image/svg+xml; charset=UTF-8");
    // SVG can carry script: never inline.
    assertEquals(media.headers.get("content-disposition"), "attachment; filename=pic.svg");
    assertEquals(new Uint8Array(await new Response(media.body).arrayBuffer()), svg);
    assertEquals(await reader.next(), null);
  });
});

Deno.test("the federation download endpoint: unsigned 401, unknown or traversal IDs 404, others' media 404", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const bob = await net.servers["b.test"].register("bob");
    const mxc = await upload(net, "a.test", alice, encoder.encode("hello"), "text/plain");
    const mediaId = mxc.split("/").pop()!;
    const unsigned = await net.servers["a.test"].app.request(`${MEDIA_PATH}${mediaId}`);
    assertEquals(unsigned.status, 401);
    for (const id of ["NoSuchMedia", "a%2Fb", "..%2F..%2Fx", "x".repeat(300)]) {
      const res = await federationGet(net, "b.test", "a.test", `${MEDIA_PATH}${id}`);
      assertEquals(res.status, 404, id);
      assertEquals((await new Response(res.body).json()).errcode, "M_NOT_FOUND");
    }
    // `..` (or `%2E%2E`) is resolved away by URL parsing before routing, so the signed URI no
    // longer matches the path: refused before any route runs.
    for (const id of ["..", "%2E%2E"]) {
      const dots = await federationGet(net, "b.test", "a.test", `${MEDIA_PATH}${id}`);
      assertEquals(dots.status, 401);
      await dots.body.cancel();
    }
    // B caches A's media after Bob reads it; B still serves only its own over federation.
    assertEquals((await download(net, "b.test", bob, mxc)).status, 200);
    const fromB = await federationGet(net, "c.test", "b.test", `${MEDIA_PATH}${mediaId}`);
    assertEquals(fromB.status, 404);
    await fromB.body.cancel();
  }, ["a.test", "b.test", "c.test"]);
});

Deno.test("media reserved by /create: 504 M_NOT_YET_UPLOADED until its bytes come, then served", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const created = await net.servers["a.test"].request("POST", "/_matrix/media/v1/create", {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(created.status, 200);
    const mediaId = (created.body.content_uri as string).split("/").pop()!;
    for (const kind of ["download", "thumbnail"]) {
      const early = await federationGet(
        net,
        "b.test",
        "a.test",
        `/_matrix/federation/v1/media/${kind}/${mediaId}?width=32&height=32&timeout_ms=0`,
      );
      assertEquals(early.status, 504, kind);
      assertEquals((await new Response(early.body).json()).errcode, "M_NOT_YET_UPLOADED");
    }
    const png = await pngOf(64, 64);
    const put = await net.servers["a.test"].app.request(
      `/_matrix/media/v3/upload/a.test/${mediaId}`,
      {
        method: "PUT",
        headers: { authorization: `Bearer ${alice.accessToken}`, "content-type": "image/png" },
        body: png.slice(),
      },
    );
    assertEquals(put.status, 200);
    const late = await federationGet(net, "b.test", "a.test", `${MEDIA_PATH}${mediaId}`);
    assertEquals((await readMediaAnswer(late)).bytes, png);
    const thumb = await federationGet(
      net,
      "b.test",
      "a.test",
      `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=32&height=32&method=crop`,
    );
    assertEquals(thumb.status, 200);
    const thumbnail = probeImage((await readMediaAnswer(thumb)).bytes);
    assertEquals([thumbnail?.width, thumbnail?.height], [32, 32]);
  });
});

Deno.test("a server without the federation endpoint is asked on the legacy media API", async () => {
  await withNetwork(
    async (net) => {
      const alice = await net.servers["a.test"].register("alice");
      const bob = await net.servers["b.test"].register("bob");
      const bytes = encoder.encode("legacy bytes");
      const mxc = await upload(net, "a.test", alice, bytes, "text/plain", "notes.txt");
      // A answers as Synapse before 1.111 does for a path it does not know.
      net.intercept((request) =>
        request.path.startsWith(MEDIA_PATH)
          ? { status: 400, body: { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" } }
          : "deliver"
      );
      const res = await download(net, "b.test", bob, mxc);
      assertEquals(res.status, 200);
      assertEquals(await res.text(), "legacy bytes");
      assertEquals(res.headers.get("content-disposition"), "inline; filename=notes.txt");
      const legacy = net.log.filter((r) => r.path.startsWith("/_matrix/media/v3/download/a.test/"));
      assertEquals(legacy.length, 1);
      assert(legacy[0].path.includes("allow_remote=false"), legacy[0].path);
    },
    ["a.test", "b.test"],
    { envFor: { "a.test": { TESSERA_MEDIA_LEGACY: "on" } } },
  );
});

/** The two parts of a federation media answer: metadata and the media's headers and bytes. */
async function readMediaAnswer(response: FederationStreamResponse) {
  const boundary = multipartBoundary(response.headers.get("content-type"));
  assert(boundary !== null, response.headers.get("content-type") ?? "no type");
  const reader = new MultipartReader(response.body, boundary);
  const metadata = JSON.parse(await new Response((await reader.next())!.body).text());
  const media = (await reader.next())!;
  const bytes = new Uint8Array(await new Response(media.body).arrayBuffer());
  assertEquals(await reader.next(), null);
  return { metadata, headers: media.headers, bytes };
}

Deno.test("thumbnails over federation: B's user gets one of A's image, and A serves its own", async () => {
  await withNetwork(async (net) => {
    const alice = await net.servers["a.test"].register("alice");
    const bob = await net.servers["b.test"].register("bob");
    const png = await pngOf(400, 300);
    const mxc = await upload(net, "a.test", alice, png, "image/png");
    const mediaId = mxc.split("/").pop()!;

    // Bob's server renders the thumbnail from the original it fetched and cached.
    const res = await net.servers["b.test"].app.request(
      `/_matrix/client/v1/media/thumbnail/a.test/${mediaId}?width=32&height=32&method=crop`,
      { headers: { authorization: `Bearer ${bob.accessToken}` } },
    );
    assertEquals(res.status, 200, await res.clone().text());
    const thumb = probeImage(new Uint8Array(await res.arrayBuffer()));
    assertEquals([thumb?.width, thumb?.height], [32, 32]);
    assertEquals(mediaRequests(net).map((r) => r.path.split("?")[0]), [`${MEDIA_PATH}${mediaId}`]);

    // A's federation thumbnail endpoint: the spec's next size up, as multipart.
    const answer = await federationGet(
      net,
      "b.test",
      "a.test",
      `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=300&height=200&method=scale`,
    );
    assertEquals(answer.status, 200);
    const { metadata, headers, bytes } = await readMediaAnswer(answer);
    assertEquals(metadata, {});
    assertEquals(headers.get("content-type"), "image/png");
    const scaled = probeImage(bytes);
    assertEquals([scaled?.width, scaled?.height], [320, 240]);

    // Not an image: 400; missing size: 400 M_MISSING_PARAM; unknown: 404.
    const text = await upload(net, "a.test", alice, encoder.encode("words"), "text/plain");
    const thumbnailOf = (id: string, query = "?width=32&height=32") =>
      federationGet(
        net,
        "b.test",
        "a.test",
        `/_matrix/federation/v1/media/thumbnail/${id}${query}`,
      );
    const notImage = await thumbnailOf(text.split("/").pop()!);
    assertEquals(notImage.status, 400);
    await notImage.body.cancel();
    const noSize = await thumbnailOf(mediaId, "?width=32");
    assertEquals(noSize.status, 400);
    assertEquals((await new Response(noSize.body).json()).errcode, "M_MISSING_PARAM");
    const unknown = await thumbnailOf("NoSuchMedia");
    assertEquals(unknown.status, 404);
    await unknown.body.cancel();
  });
});

/** A transport answering every streamed request with `answer`, following Locations for real. */
function scriptedTransport(
  answer: (request: FederationStreamRequest) => FederationStreamResponse,
  location: { allowPrivate: boolean; caCerts?: string[] },
): FederationTransport & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    request: () => Promise.reject(new Error("not used")),
    requestStream: (request) => {
      asked.push(request.path);
      return Promise.resolve(answer(request));
    },
    followLocation: (url, limits) =>
      fetchLocationStream(url, {
        allowPrivate: location.allowPrivate,
        ...(location.caCerts ? { caCerts: location.caCerts } : {}),
        exchange: httpsRequestStream,
        timeoutMs: limits.timeoutMs ?? 5000,
        maxResponseBytes: limits.maxResponseBytes,
      }),
  };
}

/** A multipart answer from parts written as text (a body that may be cut or malformed). */
function multipartAnswer(text: string, boundary = "b0undary"): FederationStreamResponse {
  return {
    status: 200,
    headers: new Headers({ "content-type": `multipart/mixed; boundary=${boundary}` }),
    body: new Response(encoder.encode(text)).body!,
  };
}

/** A MediaService over a fresh `:memory:` KV, reading remote media through `remote`. */
async function serviceWith(remote: FederationRemoteMedia, maxUploadBytes = 1_000_000) {
  const kv = await Deno.openKv(":memory:");
  const media = new MediaService(new KvMediaStore(kv), {
    serverName: "us.test",
    maxUploadBytes,
    quotaBytes: 10_000_000,
    legacy: "on",
    remoteMedia: remote,
  });
  return { media, [Symbol.dispose]: () => kv.close() };
}

/** The MatrixError `promise` rejects with (fails if it resolves). */
async function matrixErrorOf(promise: Promise<unknown>): Promise<MatrixError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof MatrixError) return e;
    throw e;
  }
  throw new Error("expected a MatrixError");
}

Deno.test("bad multipart answers are 502 and leave nothing cached", async () => {
  const head = "--b0undary\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0undary\r\n" +
    "Content-Type: image/png\r\n\r\n";
  const cases: Record<string, FederationStreamResponse> = {
    // Cut before the close delimiter: a short file must never be stored as the whole one.
    truncated: multipartAnswer(`${head}only part of the bytes`),
    notMultipart: {
      status: 200,
      headers: new Headers({ "content-type": "image/png" }),
      body: new Response("raw").body!,
    },
    metadataNotJson: multipartAnswer(
      "--b0undary\r\nContent-Type: application/json\r\n\r\nnot json\r\n--b0undary\r\n\r\nx\r\n--b0undary--",
    ),
    onePart: multipartAnswer(
      "--b0undary\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0undary--",
    ),
  };
  for (const [name, answer] of Object.entries(cases)) {
    using t = await serviceWith(
      new FederationRemoteMedia(scriptedTransport(() => answer, { allowPrivate: false })),
    );
    const error = await matrixErrorOf(t.media.open("remote.test", "abc"));
    assertEquals(error.status, 502, `${name}: ${error.message}`);
    assertEquals(await t.media.meta("remote.test", "abc"), null, name);
  }
  // Over the size limit: 502 M_TOO_LARGE, nothing cached.
  using t = await serviceWith(
    new FederationRemoteMedia(
      scriptedTransport(() => multipartAnswer(`${head}${"x".repeat(5000)}\r\n--b0undary--`), {
        allowPrivate: false,
      }),
    ),
    1000,
  );
  const error = await matrixErrorOf(t.media.open("remote.test", "big"));
  assertEquals([error.status, error.errcode], [502, "M_TOO_LARGE"]);
  assertEquals(await t.media.meta("remote.test", "big"), null);
});

Deno.test("a well-formed answer with a preamble and odd part headers is read and cached", async () => {
  const transport = scriptedTransport(() =>
    multipartAnswer(
      'preamble to ignore\r\n--b0undary\r\nContent-Type: application/json\r\n\r\n{"x":1}' +
        "\r\n--b0undary\r\ncontent-type: text/plain\r\nContent-Disposition: attachment; " +
        "filename=\"plain.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n\r\nsummer" +
        "\r\n--b0undary--\r\nepilogue",
    ), { allowPrivate: false });
  using t = await serviceWith(new FederationRemoteMedia(transport));
  const opened = await t.media.open("remote.test", "abc");
  assert(opened !== null);
  assertEquals(await new Response(opened.stream).text(), "summer");
  assertEquals(opened.meta.contentType, "text/plain");
  // filename* (UTF-8) wins over the plain one, as RFC 6266 says.
  assertEquals(opened.meta.fileName, "été.txt");
  assertEquals(transport.asked, ["/_matrix/federation/v1/media/download/abc?timeout_ms=20000"]);
});

Deno.test("a Location part or redirect is followed without X-Matrix; one to a private address is refused", async () => {
  const ca = await createTestCa();
  const leaf = await ca.issue({ ips: ["127.0.0.1"] });
  const hits: { path: string; auth: string | null }[] = [];
  const cdn = Deno.serve(
    { port: 0, hostname: "127.0.0.1", cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    (req) => {
      hits.push({ path: new URL(req.url).pathname, auth: req.headers.get("authorization") });
      return new Response("from the cdn", {
        headers: { "content-type": "image/gif", "content-disposition": "inline; filename=a.gif" },
      });
    },
  );
  try {
    const location = `https://127.0.0.1:${cdn.addr.port}/media/abc`;
    // The spec's Location part, and a plain HTTP redirect of the whole answer.
    const answers: Record<string, () => FederationStreamResponse> = {
      part: () =>
        multipartAnswer(
          "--b0undary\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0undary\r\n" +
            `Location: ${location}\r\n\r\n\r\n--b0undary--\r\n`,
        ),
      redirect: () => ({
        status: 307,
        headers: new Headers({ location }),
        body: new Response("").body!,
      }),
    };
    for (const [kind, answer] of Object.entries(answers)) {
      {
        // Loopback allowed (the test flag): the bytes come from the Location.
        hits.length = 0;
        const transport = scriptedTransport(answer, { allowPrivate: true, caCerts: [ca.caPem] });
        using t = await serviceWith(new FederationRemoteMedia(transport));
        const opened = await t.media.open("remote.test", "abc");
        assertEquals(await new Response(opened!.stream).text(), "from the cdn", kind);
        assertEquals(opened!.meta.contentType, "image/gif");
        assertEquals(opened!.meta.fileName, "a.gif");
        assertEquals(hits, [{ path: "/media/abc", auth: null }]);
      }
      {
        // Without it, the remote server cannot point us at our own network.
        hits.length = 0;
        const transport = scriptedTransport(answer, { allowPrivate: false, caCerts: [ca.caPem] });
        using t = await serviceWith(new FederationRemoteMedia(transport));
        const error = await matrixErrorOf(t.media.open("remote.test", "abc"));
        assertEquals(error.status, 502, kind);
        assertEquals(hits, []);
        assertEquals(await t.media.meta("remote.test", "abc"), null);
      }
    }
  } finally {
    await cdn.shutdown();
  }
});

Deno.test("the remote server's errors: 404 M_NOT_FOUND is not found, M_NOT_YET_UPLOADED 504", async () => {
  const json = (status: number, body: unknown): FederationStreamResponse => ({
    status,
    headers: new Headers({ "content-type": "application/json" }),
    body: new Response(JSON.stringify(body)).body!,
  });
  {
    const transport = scriptedTransport(
      () => json(404, { errcode: "M_NOT_FOUND", error: "no" }),
      { allowPrivate: false },
    );
    using t = await serviceWith(new FederationRemoteMedia(transport));
    assertEquals(await t.media.open("remote.test", "abc"), null);
    // Not found on the federation endpoint is final: no legacy request.
    assertEquals(transport.asked.length, 1);
  }
  {
    const transport = scriptedTransport(
      () => json(504, { errcode: "M_NOT_YET_UPLOADED", error: "wait" }),
      { allowPrivate: false },
    );
    using t = await serviceWith(new FederationRemoteMedia(transport));
    const error = await matrixErrorOf(t.media.open("remote.test", "abc"));
    assertEquals([error.status, error.errcode], [504, "M_NOT_YET_UPLOADED"]);
  }
  {
    // A bad media ID or server name is never put in a path.
    const transport = scriptedTransport(() => json(500, {}), { allowPrivate: false });
    using t = await serviceWith(new FederationRemoteMedia(transport));
    assertEquals(
      await new FederationRemoteMedia(transport).fetch("bad name!", "abc", {
        maxBytes: 10,
      }),
      null,
    );
    assertEquals(await t.media.open("remote.test", "../x"), null);
    assertEquals(transport.asked, []);
  }
});
