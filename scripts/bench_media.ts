/**
 * Media upload and download throughput against a real server process (main.ts on a KV file,
 * over HTTP), beside the raw Deno KV speed of the same bytes measured in the same run:
 *
 * - upload: `POST /_matrix/media/v3/upload` of random bytes (sent from memory, see `payload`;
 *   the server streams it into KV as it arrives), timed to the `content_uri` answer;
 * - download: `GET /_matrix/client/v1/media/download/...` read to the last byte (length and
 *   content spot-checked), timed from the request;
 * - raw KV write: the same number of bytes written by this process into its own KV file in
 *   the media store's shape (60 KiB values, 12 per atomic commit); raw KV read: the same values
 *   listed back in pages of 4, as the store reads them;
 * - the server's resident memory (VmRSS from /proc, sampled every 20 ms) at idle and its peak
 *   during each transfer: streaming keeps it flat, so 100 MB should peak about where 10 MB does.
 *
 * `deno task bench:media [--sizes=1,10,100] [--runs=3]` (sizes in MB of 10^6 bytes; rates in
 * MB/s) prints the median of the runs per size, min-max in brackets.
 */
import { parseArgs } from "node:util";
import { MEDIA_CHUNK_BYTES, MEDIA_CHUNKS_PER_COMMIT } from "../domain/ports/media_store.ts";
import { BenchClient } from "./bench_client_api.ts";
import { freePort, memoryOf, RssSampler, startServer } from "./bench_client_server.ts";
import { markdownTable, type RateSummary, summarise } from "./bench_stats.ts";

const MB = 1_000_000;
/** The random block the payload repeats; a multiple of the slice size so no slice wraps. */
const BLOCK = 1024 * 1024;
/** Chunks per raw KV list page: what kv/media_store.ts reads at a time. */
const RAW_READ_BATCH = 4;

const block = new Uint8Array(BLOCK);
for (let at = 0; at < BLOCK; at += 65_536) crypto.getRandomValues(block.subarray(at, at + 65_536));

/**
 * `size` bytes of the repeated random block, whole in memory. Not a stream: Deno's `fetch`
 * sends a ReadableStream body ever slower as it goes (measured: 31, 11, 10, 16 MB/s per 20 MB
 * of a 100 MB file stream into a server that pauses 6 ms per 720 KiB, where curl and a
 * Uint8Array body keep 100-150 MB/s), which would measure the client rather than the server.
 */
function payload(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += BLOCK) {
    out.set(block.subarray(0, Math.min(BLOCK, size - at)), at);
  }
  return out;
}

/** Register `username`: its access token. */
async function signIn(base: string, username: string): Promise<string> {
  return (await BenchClient.register(base, username)).session.accessToken;
}

/** Upload `size` bytes; the mxc URI's server name and media ID, and the seconds it took. */
async function upload(base: string, token: string, size: number) {
  const bytes = payload(size);
  const start = performance.now();
  const res = await fetch(`${base}/_matrix/media/v3/upload?filename=bench.bin`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/octet-stream",
    },
    body: bytes as BodyInit,
  });
  const body = await res.json();
  const seconds = (performance.now() - start) / 1000;
  if (!res.ok) throw new Error(`upload of ${size} bytes: ${res.status} ${JSON.stringify(body)}`);
  const [serverName, mediaId] = (body.content_uri as string).slice("mxc://".length).split("/");
  return { serverName, mediaId, seconds };
}

/** Download media of `size` bytes to the last byte, checking length and content; seconds. */
async function download(
  base: string,
  token: string,
  serverName: string,
  mediaId: string,
  size: number,
): Promise<number> {
  const start = performance.now();
  const res = await fetch(
    `${base}/_matrix/client/v1/media/download/${encodeURIComponent(serverName)}/${mediaId}`,
    { headers: { authorization: `Bearer ${token}` } },
  );
  if (!res.ok || !res.body) throw new Error(`download: ${res.status} ${await res.text()}`);
  let received = 0;
  for await (const chunk of res.body) {
    // Spot-check each piece's first and last byte against the payload at that offset.
    const last = received + chunk.length - 1;
    if (chunk[0] !== block[received % BLOCK] || chunk[chunk.length - 1] !== block[last % BLOCK]) {
      throw new Error(`download: bytes at ${received}-${last} differ from the upload`);
    }
    received += chunk.length;
  }
  const seconds = (performance.now() - start) / 1000;
  if (received !== size) throw new Error(`download: ${received} bytes, expected ${size}`);
  return seconds;
}

/**
 * Write `size` bytes into `kv` as the media store does (60 KiB values, 12 per commit), read them
 * back in list pages of 4, then delete them; the write and read seconds.
 */
async function rawKv(kv: Deno.Kv, run: string, size: number) {
  const chunks = Math.ceil(size / MEDIA_CHUNK_BYTES);
  const chunkAt = (i: number) => {
    const from = i * MEDIA_CHUNK_BYTES;
    const n = Math.min(MEDIA_CHUNK_BYTES, size - from);
    // The same random bytes the upload sends (copied: a KV value is its own buffer).
    const out = new Uint8Array(n);
    for (let done = 0; done < n;) {
      const offset = (from + done) % BLOCK;
      const take = Math.min(n - done, BLOCK - offset);
      out.set(block.subarray(offset, offset + take), done);
      done += take;
    }
    return out;
  };
  const writeStart = performance.now();
  for (let i = 0; i < chunks; i += MEDIA_CHUNKS_PER_COMMIT) {
    const atomic = kv.atomic();
    for (let j = i; j < Math.min(chunks, i + MEDIA_CHUNKS_PER_COMMIT); j++) {
      atomic.set(["bench_media_raw", run, j], chunkAt(j));
    }
    const result = await atomic.commit();
    if (!result.ok) throw new Error("raw KV commit failed");
  }
  const write = (performance.now() - writeStart) / 1000;

  const readStart = performance.now();
  let read = 0;
  for await (
    const entry of kv.list<Uint8Array>({ prefix: ["bench_media_raw", run] }, {
      batchSize: RAW_READ_BATCH,
    })
  ) {
    read += entry.value.length;
  }
  const readSeconds = (performance.now() - readStart) / 1000;
  if (read !== size) throw new Error(`raw KV read ${read} bytes, expected ${size}`);

  for (let i = 0; i < chunks; i += 500) {
    const atomic = kv.atomic();
    for (let j = i; j < Math.min(chunks, i + 500); j++) atomic.delete(["bench_media_raw", run, j]);
    await atomic.commit();
  }
  return { write, read: readSeconds };
}

/** Figures of one size over the runs. */
interface SizeFigures {
  upload: number[];
  download: number[];
  rawWrite: number[];
  rawRead: number[];
  uploadPeakMiB: number[];
  downloadPeakMiB: number[];
}

function rate(summary: RateSummary): string {
  return `${summary.median.toFixed(1)} (${summary.min.toFixed(1)}-${summary.max.toFixed(1)})`;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: { sizes: { type: "string", default: "1,10,100" }, runs: { type: "string" } },
  });
  const sizes = values.sizes.split(",").map((s) => Number(s) * MB);
  if (sizes.some((s) => !(s > 0))) throw new Error(`--sizes: ${values.sizes}`);
  const runs = Number(values.runs ?? 3);
  const largest = Math.max(...sizes);

  const dir = await Deno.makeTempDir({ prefix: "tessera-bench-media-" });
  const server = await startServer({
    dir,
    port: freePort(),
    env: {
      TESSERA_MEDIA_MAX_UPLOAD_BYTES: String(largest),
      TESSERA_MEDIA_QUOTA_BYTES: String(2 ** 40),
    },
  });
  const raw = await Deno.openKv(`${dir}/raw.kv`);
  const sampler = new RssSampler(server.pid, 20);
  try {
    const token = await signIn(server.base, "bench");
    // Warm up the routes and the server's code paths once before measuring.
    const warm = await upload(server.base, token, 64 * 1024);
    await download(server.base, token, warm.serverName, warm.mediaId, 64 * 1024);
    await new Promise((r) => setTimeout(r, 500));
    const idleMiB = memoryOf(server.pid).rssMiB;

    const figures = new Map<number, SizeFigures>();
    for (const size of sizes) {
      const f: SizeFigures = {
        upload: [],
        download: [],
        rawWrite: [],
        rawRead: [],
        uploadPeakMiB: [],
        downloadPeakMiB: [],
      };
      figures.set(size, f);
      for (let run = 0; run < runs; run++) {
        const rawSeconds = await rawKv(raw, `${size}-${run}`, size);
        f.rawWrite.push(size / MB / rawSeconds.write);
        f.rawRead.push(size / MB / rawSeconds.read);

        sampler.takePeak();
        const up = await upload(server.base, token, size);
        f.uploadPeakMiB.push(sampler.takePeak());
        f.upload.push(size / MB / up.seconds);

        const downSeconds = await download(server.base, token, up.serverName, up.mediaId, size);
        f.downloadPeakMiB.push(sampler.takePeak());
        f.download.push(size / MB / downSeconds);
        console.error(
          `${size / MB} MB run ${run + 1}: upload ${(size / MB / up.seconds).toFixed(1)} MB/s, ` +
            `download ${(size / MB / downSeconds).toFixed(1)} MB/s, raw KV write ` +
            `${(size / MB / rawSeconds.write).toFixed(1)} MB/s, read ` +
            `${(size / MB / rawSeconds.read).toFixed(1)} MB/s`,
        );
      }
    }

    console.log(
      `\nMedia throughput, ${runs} run(s) per size, median (min-max), MB = 10^6 bytes; ` +
        `server RSS at idle ${idleMiB.toFixed(0)} MiB\n`,
    );
    const rows = sizes.map((size) => {
      const f = figures.get(size)!;
      const up = summarise(f.upload), down = summarise(f.download);
      const rawW = summarise(f.rawWrite), rawR = summarise(f.rawRead);
      return [
        `${size / MB} MB`,
        rate(up),
        rate(down),
        rate(rawW),
        rate(rawR),
        `${(up.median / rawW.median).toFixed(2)}x`,
        `${(down.median / rawR.median).toFixed(2)}x`,
        `${Math.max(...f.uploadPeakMiB).toFixed(0)} MiB`,
        `${Math.max(...f.downloadPeakMiB).toFixed(0)} MiB`,
      ];
    });
    console.log(markdownTable([
      "size",
      "upload MB/s",
      "download MB/s",
      "raw KV write MB/s",
      "raw KV read MB/s",
      "upload / raw write",
      "download / raw read",
      "peak RSS, upload",
      "peak RSS, download",
    ], rows));
  } finally {
    sampler.stop();
    raw.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
