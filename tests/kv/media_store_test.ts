/**
 * The KV media store: chunks are committed as a write streams in but nothing is visible until
 * the metadata's commit, which carries the last chunks; refused writes take their chunks with
 * them; reads stream chunk by chunk; thumbnails and remote copies are create-if-absent; the
 * quota holds between concurrent writers; reservations are capped per user.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvMediaStore } from "../../kv/media_store.ts";
import { mediaKeys } from "../../kv/schema.ts";
import {
  type DerivedKey,
  MEDIA_CHUNK_BYTES,
  MEDIA_CHUNKS_PER_COMMIT,
  type MediaWriteTarget,
} from "../../domain/ports/media_store.ts";

const SERVER = "example.org";

function local(mediaId: string, limitBytes = 1e12): MediaWriteTarget {
  return {
    kind: "local",
    meta: {
      server: SERVER,
      mediaId,
      contentType: "application/octet-stream",
      uploader: "@a:example.org",
      createdAt: 1000,
    },
    quota: { userId: "@a:example.org", limitBytes },
  };
}

async function count(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

function pattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 10)) & 0xff);
}

Deno.test("media store: chunks commit as they stream, metadata only with the last of them", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const bytes = pattern(30 * MEDIA_CHUNK_BYTES + 1000);
    const write = await store.beginWrite(Date.now() + 60_000);
    // Pieces that do not line up with chunks.
    for (let i = 0; i < bytes.byteLength; i += 40_000) {
      await write.write(bytes.subarray(i, i + 40_000));
    }
    // Some batches are committed, at most a batch and a chunk is still held, nothing is visible.
    const committed = await count(kv, mediaKeys.chunkPrefix(write.uploadId));
    assertEquals(committed % MEDIA_CHUNKS_PER_COMMIT, 0);
    assert(committed >= 30 - MEDIA_CHUNKS_PER_COMMIT, String(committed));
    assert(committed < 31, String(committed));
    assertEquals(await store.meta(SERVER, "m1"), null);
    assert((await kv.get(mediaKeys.pendingUpload(write.uploadId))).value !== null);
    assertEquals(await store.usage("@a:example.org"), 0);

    const result = await write.finish(local("m1"), "ab");
    assert(result.ok);
    assertEquals(result.meta.size, bytes.byteLength);
    const meta = await store.meta(SERVER, "m1");
    assertEquals(meta?.uploadId, write.uploadId);
    assertEquals((await kv.get(mediaKeys.pendingUpload(write.uploadId))).value, null);
    assertEquals(await store.usage("@a:example.org"), bytes.byteLength);
    assertEquals(await count(kv, ["userid_mediaid", "@a:example.org"]), 1);
    assertEquals(await count(kv, ["mediatime_mediaid"]), 1);

    // Read back as a stream of 60 KiB chunks (the last one short), in order.
    const sizes: number[] = [];
    const back = new Uint8Array(bytes.byteLength);
    let offset = 0;
    for await (const chunk of store.readChunks(write.uploadId)) {
      sizes.push(chunk.byteLength);
      back.set(chunk, offset);
      offset += chunk.byteLength;
    }
    assertEquals(sizes.length, 31);
    assert(sizes.slice(0, 30).every((s) => s === MEDIA_CHUNK_BYTES));
    assertEquals(sizes[30], 1000);
    assertEquals(back, bytes);
  } finally {
    kv.close();
  }
});

Deno.test("media store: a write that fits one commit writes no pending record; empty media works", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const write = await store.beginWrite(0);
    await write.write(pattern(MEDIA_CHUNK_BYTES * MEDIA_CHUNKS_PER_COMMIT));
    assertEquals(await count(kv, ["mediaid_chunk"]), 0);
    assertEquals(await count(kv, ["mediaupload_pending"]), 0);
    assert((await write.finish(local("full"), "x")).ok);
    assertEquals(await count(kv, ["mediaid_chunk"]), MEDIA_CHUNKS_PER_COMMIT);

    const empty = await store.beginWrite(0);
    const result = await empty.finish(local("empty"), "e3b0");
    assert(result.ok);
    assertEquals(result.meta.size, 0);
    const chunks = [];
    for await (const c of store.readChunks(empty.uploadId)) chunks.push(c);
    assertEquals(chunks.length, 0);
  } finally {
    kv.close();
  }
});

Deno.test("media store: over quota or an existing ID refuses and drops the chunks; abort too", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const big = pattern(40 * MEDIA_CHUNK_BYTES);
    const write = await store.beginWrite(0);
    await write.write(big);
    assert(await count(kv, ["mediaid_chunk"]) > 0);
    assertEquals(await write.finish(local("q", 1000), "x"), { ok: false, reason: "quota" });
    assertEquals(await count(kv, ["mediaid_chunk"]), 0);
    assertEquals(await count(kv, ["mediaupload_pending"]), 0);
    assertEquals(await store.meta(SERVER, "q"), null);

    const first = await store.beginWrite(0);
    await first.write(pattern(10));
    assert((await first.finish(local("dup"), "x")).ok);
    const second = await store.beginWrite(0);
    await second.write(big);
    assertEquals(await second.finish(local("dup"), "y"), { ok: false, reason: "exists" });
    assertEquals(await count(kv, ["mediaid_chunk"]), 1);
    assertEquals(await store.usage("@a:example.org"), 10);

    const aborted = await store.beginWrite(0);
    await aborted.write(big);
    await aborted.abort();
    assertEquals(await count(kv, ["mediaid_chunk"]), 1);
    assertEquals(await count(kv, ["mediaupload_pending"]), 0);
  } finally {
    kv.close();
  }
});

Deno.test("media store: concurrent uploads of one user cannot pass the quota together", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const writes = await Promise.all(Array.from({ length: 6 }, () => store.beginWrite(0)));
    for (const w of writes) await w.write(pattern(100));
    const results = await Promise.all(
      writes.map((w, i) => w.finish(local(`c${i}`, 350), "x")),
    );
    assertEquals(results.filter((r) => r.ok).length, 3);
    assertEquals(results.filter((r) => !r.ok && r.reason === "quota").length, 3);
    assertEquals(await store.usage("@a:example.org"), 300);
  } finally {
    kv.close();
  }
});

Deno.test("media store: thumbnails and remote copies are create-if-absent; quarantine flag", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const key: DerivedKey = {
      server: SERVER,
      mediaId: "orig",
      width: 32,
      height: 32,
      method: "crop",
      animated: false,
    };
    const put = async (bytes: Uint8Array) => {
      const w = await store.beginWrite(0);
      await w.write(bytes);
      return await w.finish(
        { kind: "derived", key, meta: { contentType: "image/png", createdAt: 1 } },
        "x",
      );
    };
    const [a, b] = await Promise.all([put(pattern(5)), put(pattern(6))]);
    const stored = await store.derivedMeta(key);
    assert(stored !== null);
    const winners = [a, b].filter((r) => r.ok);
    assertEquals(winners.length, 1);
    const loser = [a, b].find((r) => !r.ok)!;
    assert(!loser.ok && loser.reason === "existing" && loser.meta.uploadId === stored.uploadId);
    assertEquals(await count(kv, ["mediaid_chunk"]), 1);
    assertEquals((await store.listDerived(SERVER, "orig")).length, 1);
    assertEquals(await store.derivedMeta({ ...key, method: "scale" }), null);

    const remote = async () => {
      const w = await store.beginWrite(0);
      await w.write(pattern(3));
      return await w.finish({
        kind: "remote",
        meta: { server: "remote.test", mediaId: "r", contentType: "text/plain", createdAt: 2 },
      }, "x");
    };
    assert((await remote()).ok);
    const again = await remote();
    assert(!again.ok && again.reason === "existing");
    assertEquals((await store.meta("remote.test", "r"))?.remote, true);
    // Cached remote media is charged to no one.
    assertEquals(await count(kv, ["userid_mediausage"]), 0);

    assertEquals(await store.setQuarantined("remote.test", "r", true), true);
    assertEquals((await store.meta("remote.test", "r"))?.quarantined, true);
    assertEquals(await store.setQuarantined("remote.test", "r", false), true);
    assertEquals((await store.meta("remote.test", "r"))?.quarantined, undefined);
    assertEquals(await store.setQuarantined("remote.test", "nope", true), false);
  } finally {
    kv.close();
  }
});

Deno.test("media store: reservations are capped per user, expired ones dropped; freeze time kept", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const reserve = (mediaId: string, now: number, expiresAt: number) =>
      store.reserve(
        { server: SERVER, mediaId, uploader: "@a:example.org", createdAt: now, expiresAt },
        2,
        now,
      );
    assert(await reserve("r1", 0, 100));
    assert(await reserve("r2", 0, 1000));
    assertEquals(await reserve("r3", 50, 1000), false);
    // r1 expires at 100: a later reservation takes its place and removes it.
    assert(await reserve("r3", 150, 1000));
    assertEquals(await store.reservation(SERVER, "r1"), null);
    assertEquals((await store.reservation(SERVER, "r3"))?.uploader, "@a:example.org");

    assertEquals(await store.legacyFreezeTime(5), 5);
    assertEquals(await store.legacyFreezeTime(9), 5);
  } finally {
    kv.close();
  }
});

Deno.test("media store: the cleanup drops expired abandoned writes only, and such a write cannot finish", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvMediaStore(kv);
    const big = pattern(20 * MEDIA_CHUNK_BYTES);
    const abandoned = await store.beginWrite(1000);
    await abandoned.write(big);
    const live = await store.beginWrite(5000);
    await live.write(big);
    const before = await count(kv, ["mediaid_chunk"]);
    assertEquals(await store.dropAbandonedWrites(2000), 1);
    assertEquals(await count(kv, mediaKeys.chunkPrefix(abandoned.uploadId)), 0);
    assertEquals(await count(kv, ["mediaid_chunk"]), before / 2);
    assertEquals(await count(kv, ["mediaupload_pending"]), 1);
    // The dropped write, should its process come back, publishes nothing.
    let threw = false;
    try {
      await abandoned.finish(local("late"), "x");
    } catch {
      threw = true;
    }
    assert(threw);
    assertEquals(await store.meta(SERVER, "late"), null);
    assert((await live.finish(local("live"), "x")).ok);
    assertEquals(await store.dropAbandonedWrites(10_000), 0);
    assertEquals(await count(kv, ["mediaid_chunk"]), 20);
  } finally {
    kv.close();
  }
});
