/**
 * MediaService.awaitUpload where the HTTP tests cannot force the timing: the upload's commit
 * (media stored, reservation dropped) lands between the waiting reader's two reads. The store
 * is the real KV one on `:memory:`, wrapped to run the upload at that moment.
 */
import { assert, assertEquals } from "../../assert.ts";
import { MediaService } from "../../../domain/media/media_service.ts";
import type { MediaStore } from "../../../domain/ports/media_store.ts";
import { KvMediaStore } from "../../../kv/media_store.ts";

Deno.test("awaitUpload: an upload landing between the reader's reads is served, not 404", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const real = new KvMediaStore(kv);
    let landUpload: (() => Promise<void>) | undefined;
    // The reader's next reservation read first lets the upload finish.
    const store = new Proxy(real, {
      get(target, property, receiver) {
        if (property === "reservation") {
          return async (...args: Parameters<MediaStore["reservation"]>) => {
            const land = landUpload;
            landUpload = undefined;
            await land?.();
            return await target.reservation(...args);
          };
        }
        const value = Reflect.get(target, property, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const media = new MediaService(store, {
      serverName: "example.org",
      maxUploadBytes: 1 << 20,
      quotaBytes: 1 << 30,
      legacy: "off",
    });
    const { mxc } = await media.createPending("@alice:example.org");
    const mediaId = mxc.split("/").pop()!;
    landUpload = async () => {
      await media.uploadPending("example.org", mediaId, new TextEncoder().encode("late"), {
        contentType: "text/plain",
        uploader: "@alice:example.org",
      });
    };
    const opened = await media.awaitUpload("example.org", mediaId, 5_000);
    assert(opened !== null, "the waiting reader missed the upload");
    assertEquals(await new Response(opened.stream).text(), "late");
    assertEquals(landUpload, undefined);
  } finally {
    kv.close();
  }
});
