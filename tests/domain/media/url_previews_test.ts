import { assert, assertEquals } from "../../assert.ts";
import {
  boundPreview,
  MAX_PREVIEW_JSON_BYTES,
  PREVIEW_BUCKET_MS,
  type PreviewImageStore,
  UrlPreviews,
} from "../../../domain/media/url_previews.ts";
import type { OpenGraph } from "../../../domain/media/open_graph.ts";
import { MatrixError } from "../../../domain/errors.ts";
import { OutboundError, type OutboundFailure } from "../../../domain/ports/outbound_http.ts";
import type {
  FetchedResource,
  UrlPreviewFetcher,
} from "../../../domain/ports/url_preview_fetcher.ts";
import type { UrlPreviewCache } from "../../../domain/ports/url_preview_cache.ts";

/** The first bytes of a PNG of `width` x `height` (enough for the header probe). */
function pngHeader(width: number, height: number): Uint8Array {
  const bytes = new Uint8Array(33);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
  bytes.set(new TextEncoder().encode("IHDR"), 12);
  const view = new DataView(bytes.buffer);
  view.setUint32(16, width);
  view.setUint32(20, height);
  bytes.set([8, 6, 0, 0, 0], 24);
  return bytes;
}

type Answer = FetchedResource | OutboundFailure;

class FakeFetcher implements UrlPreviewFetcher {
  readonly requested: string[] = [];
  constructor(readonly answers: Map<string, Answer>) {}
  get(url: string): Promise<FetchedResource> {
    this.requested.push(url);
    const answer = this.answers.get(url);
    if (answer === undefined) return Promise.reject(new OutboundError("network", "no route"));
    if (typeof answer === "string") return Promise.reject(new OutboundError(answer, answer));
    return Promise.resolve(answer);
  }
}

class MapCache implements UrlPreviewCache {
  readonly entries = new Map<string, OpenGraph>();
  get(urlKey: string, hour: number) {
    return Promise.resolve(this.entries.get(`${urlKey}/${hour}`) ?? null);
  }
  put(urlKey: string, hour: number, preview: OpenGraph) {
    this.entries.set(`${urlKey}/${hour}`, preview);
    return Promise.resolve();
  }
}

class RecordingImages implements PreviewImageStore {
  readonly uploads: Array<{ bytes: number; contentType: string; uploader: string }> = [];
  upload(body: Uint8Array, info: { contentType: string; uploader: string }) {
    this.uploads.push({
      bytes: body.length,
      contentType: info.contentType,
      uploader: info.uploader,
    });
    return Promise.resolve({ mxc: `mxc://test/img${this.uploads.length}` });
  }
}

function html(
  url: string,
  body: string,
  contentType = "text/html; charset=utf-8",
): FetchedResource {
  return { url, status: 200, contentType, body: new TextEncoder().encode(body) };
}

function setup(answers: Array<[string, Answer]>, start = 100 * PREVIEW_BUCKET_MS) {
  const fetcher = new FakeFetcher(new Map(answers));
  const cache = new MapCache();
  const images = new RecordingImages();
  const clock = { now: start };
  const previews = new UrlPreviews({ fetcher, cache, images, now: () => clock.now });
  return { fetcher, cache, images, clock, previews };
}

async function matrixError(promise: Promise<unknown>): Promise<[number, string]> {
  try {
    await promise;
  } catch (e) {
    assert(e instanceof MatrixError, String(e));
    return [e.status, e.errcode];
  }
  throw new Error("expected a Matrix error");
}

const PAGE = "https://news.example/story";
const IMAGE = "https://cdn.example/cover.png";

Deno.test("a page's og:image is fetched, stored as local media and described", async () => {
  const png = pngHeader(640, 480);
  const { previews, images } = setup([
    [
      PAGE,
      html(
        PAGE,
        `<meta property="og:title" content="Story"><meta property="og:image" content="${IMAGE}"><meta property="og:image:width" content="9999">`,
      ),
    ],
    [IMAGE, { url: IMAGE, status: 200, contentType: "image/png", body: png }],
  ]);
  const og = await previews.preview("@alice:test", PAGE);
  assertEquals(og, {
    "og:title": "Story",
    "og:image": "mxc://test/img1",
    "og:image:type": "image/png",
    "og:image:width": 640,
    "og:image:height": 480,
    "matrix:image:size": png.length,
  });
  assertEquals(images.uploads, [{
    bytes: png.length,
    contentType: "image/png",
    uploader: "@alice:test",
  }]);
});

Deno.test("an image URL previews as the image itself", async () => {
  const { previews } = setup([[IMAGE, {
    url: IMAGE,
    status: 200,
    contentType: "image/png",
    body: pngHeader(32, 16),
  }]]);
  const og = await previews.preview("@alice:test", IMAGE);
  assertEquals(og["og:image"], "mxc://test/img1");
  assertEquals(og["og:image:width"], 32);
  assertEquals(og["og:title"], "cover.png");
});

Deno.test("an og:image that is refused, missing or not an image leaves the preview without one", async () => {
  for (const answer of ["refused", html(IMAGE, "<html>not an image</html>")] as Answer[]) {
    const { previews, images } = setup([
      [
        PAGE,
        html(
          PAGE,
          `<title>T</title><meta property="og:image" content="${IMAGE}"><meta property="og:image:width" content="10">`,
        ),
      ],
      [IMAGE, answer],
    ]);
    const og = await previews.preview("@alice:test", PAGE);
    assertEquals(og, { "og:title": "T" });
    assertEquals(images.uploads.length, 0);
  }
});

Deno.test("previews are cached per hour, and ts reads the hour it names", async () => {
  const { previews, fetcher, clock } = setup([[PAGE, html(PAGE, "<title>first</title>")]]);
  const firstHour = clock.now;
  assertEquals((await previews.preview("@a:test", PAGE))["og:title"], "first");
  assertEquals((await previews.preview("@b:test", `${PAGE}#fragment`))["og:title"], "first");
  assertEquals(fetcher.requested.length, 1);
  fetcher.answers.set(PAGE, html(PAGE, "<title>second</title>"));
  clock.now += PREVIEW_BUCKET_MS;
  assertEquals((await previews.preview("@a:test", PAGE))["og:title"], "second");
  assertEquals((await previews.preview("@a:test", PAGE, firstHour + 10))["og:title"], "first");
  // An hour with no preview of its own gets the newest one, as the spec allows.
  assertEquals(
    (await previews.preview("@a:test", PAGE, firstHour - 5 * PREVIEW_BUCKET_MS))["og:title"],
    "second",
  );
  // A time in the future is now.
  assertEquals((await previews.preview("@a:test", PAGE, clock.now * 2))["og:title"], "second");
  assertEquals(fetcher.requested.length, 2);
});

Deno.test("concurrent previews of one URL share one fetch", async () => {
  const { previews, fetcher } = setup([[PAGE, html(PAGE, "<title>x</title>")]]);
  const all = await Promise.all([1, 2, 3].map((i) => previews.preview(`@u${i}:test`, PAGE)));
  assertEquals(all.map((og) => og["og:title"]), ["x", "x", "x"]);
  assertEquals(fetcher.requested.length, 1);
});

Deno.test("failures become Matrix errors; nothing is cached", async () => {
  const cases: Array<[Answer, [number, string]]> = [
    ["refused", [403, "M_FORBIDDEN"]],
    ["too_large", [413, "M_TOO_LARGE"]],
    ["timeout", [504, "M_UNKNOWN"]],
    ["unresolved", [502, "M_UNKNOWN"]],
    [{ ...html(PAGE, "gone"), status: 404 }, [502, "M_UNKNOWN"]],
  ];
  for (const [answer, expected] of cases) {
    const { previews, cache } = setup([[PAGE, answer]]);
    assertEquals(await matrixError(previews.preview("@a:test", PAGE)), expected);
    assertEquals(cache.entries.size, 0);
  }
  const { previews, fetcher } = setup([]);
  for (
    const bad of [
      "file:///etc/passwd",
      "javascript:alert(1)",
      "not a url",
      `https://x.example/${"a".repeat(3000)}`,
    ]
  ) {
    assertEquals(await matrixError(previews.preview("@a:test", bad)), [400, "M_INVALID_PARAM"]);
  }
  assertEquals(fetcher.requested.length, 0);
});

Deno.test("other content types preview as an empty object; sniffed HTML is read", async () => {
  const pdf = "https://docs.example/a.pdf";
  const sniffed = "https://odd.example/";
  const { previews } = setup([
    [pdf, { url: pdf, status: 200, contentType: "application/pdf", body: new Uint8Array(10) }],
    [sniffed, html(sniffed, "<!DOCTYPE html><title>sniffed</title>", "text/plain")],
  ]);
  assertEquals(await previews.preview("@a:test", pdf), {});
  assertEquals((await previews.preview("@a:test", sniffed))["og:title"], "sniffed");
});

Deno.test("a preview is cut to fit one KV value, keeping what clients show", () => {
  const og: OpenGraph = { "og:title": "t".repeat(1000), "og:description": "d".repeat(500) };
  for (let i = 0; i < 50; i++) og[`og:extra${i}`] = "€".repeat(1000);
  const bounded = boundPreview(og);
  assert(new TextEncoder().encode(JSON.stringify(bounded)).length <= MAX_PREVIEW_JSON_BYTES);
  assertEquals(bounded["og:title"], og["og:title"]);
  assertEquals(bounded["og:description"], og["og:description"]);
});

Deno.test("a page's own image dimensions become integers when the header cannot be read", async () => {
  const svg = "https://cdn.example/logo.svg";
  const { previews } = setup([
    [
      PAGE,
      html(
        PAGE,
        `<meta property="og:image" content="${svg}"><meta property="og:image:width" content=" 300 ">` +
          `<meta property="og:image:height" content="tall">`,
      ),
    ],
    [svg, html(svg, "<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")],
  ]);
  const og = await previews.preview("@a:test", PAGE);
  assertEquals(og["og:image:type"], "image/svg+xml");
  assertEquals(og["og:image:width"], 300);
  assertEquals(og["og:image:height"], undefined);
});
