/**
 * Adversarial review of the media repository (issue 15): attacks that got through the parts'
 * own tests. Each test names the attack and what must hold.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { KvMediaStore } from "../../kv/media_store.ts";
import { MediaService } from "../../domain/media/media_service.ts";
import type { MediaWrite } from "../../domain/ports/media_store.ts";
import { ThumbnailService } from "../../domain/media/thumbnail_service.ts";
import type { ThumbnailRenderer } from "../../domain/media/thumbnail_renderer.ts";
import { mediaHeaders } from "../../routes/media/media_headers.ts";

const SERVER = "example.org";
const USER = "@mallory:example.org";

/** A KvMediaStore that counts the bytes handed to its writes (what would reach KV). */
class CountingStore extends KvMediaStore {
  written = 0;
  writesBegun = 0;
  override async beginWrite(pendingExpiresAt: number): Promise<MediaWrite> {
    this.writesBegun++;
    const inner = await super.beginWrite(pendingExpiresAt);
    // deno-lint-ignore no-this-alias
    const store = this;
    return {
      get uploadId() {
        return inner.uploadId;
      },
      get size() {
        return inner.size;
      },
      write(bytes) {
        store.written += bytes.byteLength;
        return inner.write(bytes);
      },
      finish: (target, sha) => inner.finish(target, sha),
      abort: () => inner.abort(),
    };
  }
}

/** A body of `total` bytes in 64 KiB pieces, as a chunked upload streams in. */
function chunkedBody(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(65536, total - sent);
      sent += n;
      controller.enqueue(new Uint8Array(n));
    },
  });
}

Deno.test("media review: a user over their quota cannot stream 50 MB into KV before the refusal", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new CountingStore(kv);
    const quota = 256 * 1024;
    const media = new MediaService(store, {
      serverName: SERVER,
      maxUploadBytes: 50 * 1024 * 1024,
      quotaBytes: quota,
      legacy: "frozen",
    });
    // A chunked upload (no Content-Length) far past the quota: refused once past it, not after
    // the whole body went into KV chunks.
    await assertRejects(
      () =>
        media.upload(chunkedBody(8 * 1024 * 1024), { contentType: "text/plain", uploader: USER }),
      /quota/,
    );
    assert(store.written <= quota + 65536, `${store.written} bytes reached the store`);

    // Declared lengths past the quota left are refused before a single byte is read or written.
    store.written = 0;
    store.writesBegun = 0;
    await assertRejects(
      () =>
        media.upload(chunkedBody(quota + 1), {
          contentType: "text/plain",
          declaredLength: quota + 1,
          uploader: USER,
        }),
      /quota/,
    );
    assertEquals(store.writesBegun, 0);

    // Within the quota uploads still work, and the quota is then full.
    await media.upload(new Uint8Array(quota), { contentType: "text/plain", uploader: USER });
    assertEquals(await media.usage(USER), quota);
    store.written = 0;
    store.writesBegun = 0;
    await assertRejects(
      () => media.upload(chunkedBody(1024 * 1024), { contentType: "text/plain", uploader: USER }),
      /quota/,
    );
    assertEquals(store.written, 0);
  } finally {
    kv.close();
  }
});

Deno.test("media review: concurrent thumbnail requests do not each buffer an original at once", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const media = new MediaService(new KvMediaStore(kv), {
      serverName: SERVER,
      maxUploadBytes: 50 * 1024 * 1024,
      quotaBytes: 1e12,
      legacy: "frozen",
    });
    // Large "images" (a PNG signature and header, then padding): each request for another size
    // reads the whole original into memory before rendering.
    const header = new Uint8Array([
      0x89,
      0x50,
      0x4e,
      0x47,
      0x0d,
      0x0a,
      0x1a,
      0x0a,
      0,
      0,
      0,
      13,
      0x49,
      0x48,
      0x44,
      0x52,
      0,
      0,
      0,
      100,
      0,
      0,
      0,
      100,
      8,
      6,
      0,
      0,
      0,
    ]);
    const original = new Uint8Array(512 * 1024);
    original.set(header);
    const { mxc } = await media.upload(original, { contentType: "image/png", uploader: USER });
    const mediaId = mxc.split("/").pop()!;

    let buffered = 0;
    let peak = 0;
    const counted = {
      open: async (...args: Parameters<MediaService["open"]>) => {
        const opened = await media.open(...args);
        if (opened === null) return null;
        // Memory is taken once the original's bytes are read, not when it is opened.
        const source = opened.stream.getReader();
        let first = true;
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (first) {
              first = false;
              buffered++;
              peak = Math.max(peak, buffered);
            }
            const { done, value } = await source.read();
            if (done) controller.close();
            else controller.enqueue(value);
          },
          cancel: (reason) => source.cancel(reason),
        }, { highWaterMark: 0 });
        return { meta: opened.meta, stream };
      },
      meta: media.meta.bind(media),
      openDerived: media.openDerived.bind(media),
      putDerived: media.putDerived.bind(media),
    };
    const renderer: ThumbnailRenderer = {
      async render() {
        // The render takes a while (a Worker); meanwhile other requests come in.
        await new Promise((resolve) => setTimeout(resolve, 5));
        buffered--;
        return {
          bytes: new Uint8Array([1, 2, 3]),
          contentType: "image/png",
          width: 1,
          height: 1,
          animated: false,
        };
      },
    };
    const thumbnails = new ThumbnailService(counted, renderer, { maxPixels: 32_000_000 });
    const requests = [];
    for (const [width, height] of [[32, 32], [96, 96], [320, 240], [640, 480], [800, 600]]) {
      for (const method of ["crop", "scale"] as const) {
        for (const animated of [false, true]) {
          requests.push(
            thumbnails.thumbnail({
              server: SERVER,
              mediaId,
              width,
              height,
              method,
              animated,
              allowRemote: false,
            }).then((t) => t.stream.cancel()),
          );
        }
      }
    }
    await Promise.all(requests);
    assert(peak <= 2, `${peak} originals were held in memory at once`);
  } finally {
    kv.close();
  }
});

Deno.test("media review: a content type that a browser reads as two types is never inline", () => {
  // Browsers split Content-Type on commas and use the last MIME type (Fetch's "extract a MIME
  // type"), so this would render as HTML while its essence looks like a safe image.
  for (
    const type of ["image/png; a=b,text/html", "image/png,text/html", "text/plain, image/svg+xml"]
  ) {
    const headers = mediaHeaders({ contentType: type });
    assert(
      headers.get("Content-Disposition")!.startsWith("attachment"),
      `${type}: ${headers.get("Content-Disposition")}`,
    );
  }
  assertEquals(mediaHeaders({ contentType: "image/png" }).get("Content-Disposition"), "inline");
});

Deno.test("media review: an upload that stalls half way is refused and dropped, not held open", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new CountingStore(kv);
    const media = new MediaService(store, {
      serverName: SERVER,
      maxUploadBytes: 50 * 1024 * 1024,
      quotaBytes: 1e12,
      legacy: "frozen",
      uploadIdleTimeoutMs: 50,
    });
    // 600 KiB (held in memory as unflushed chunks), then nothing, without ever ending: each
    // such request would pin its buffer for as long as the client keeps the connection open.
    let sent = false;
    let cancelled = false;
    const stalled = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return new Promise<void>(() => {});
        sent = true;
        controller.enqueue(new Uint8Array(600 * 1024));
      },
      cancel() {
        cancelled = true;
      },
    });
    await assertRejects(
      () => media.upload(stalled, { contentType: "text/plain", uploader: USER }),
      /stalled/,
    );
    assert(cancelled, "the stalled body was not released");
    let chunks = 0;
    for await (const _ of kv.list({ prefix: ["mediaid_chunk"] })) chunks++;
    assertEquals(chunks, 0);
    assertEquals(await media.usage(USER), 0);
  } finally {
    kv.close();
  }
});
