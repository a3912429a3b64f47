/**
 * `deno task bench:keys`: one-time key claim throughput of the KV device key store on a
 * file-backed KV (one disk sync per commit), with 1 claimer, 20 concurrent claimers in one
 * process (batched into shared commits), and 20 claimers split over two KV connections to the
 * same file (as two processes would be, where only the KV check keeps them apart). Each run
 * uploads a fresh device's keys and claims them all; the median of the runs is printed.
 *
 * Flags: --runs=N (default 5), --keys=N one-time keys per run (default 1000), --quick (3 runs
 * of 300 keys), --dir=PATH (where the KV files go; default a temp dir).
 */
import type { UploadedKey } from "../domain/ports/device_key_store.ts";
import { encodeBase64Unpadded } from "../domain/protocol/base64.ts";
import { KvDeviceKeyStore } from "../kv/device_key_store.ts";
import { formatSummary, markdownTable, summarise } from "./bench_stats.ts";

interface Options {
  runs: number;
  keys: number;
  dir?: string;
}

interface Scenario {
  name: string;
  claimers: number;
  connections: number;
}

const SCENARIOS: Scenario[] = [
  { name: "1 claimer", claimers: 1, connections: 1 },
  { name: "20 claimers, one process", claimers: 20, connections: 1 },
  { name: "20 claimers, two connections", claimers: 20, connections: 2 },
];

const USER = "@bench:example.org";
const ALG = "signed_curve25519";
/** Keys per upload call, as a client would send them in a few batches. */
const UPLOAD_BATCH = 500;

function parseOptions(args: string[]): Options {
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const quick = args.includes("--quick");
  return {
    runs: Number(flag("runs") ?? (quick ? 3 : 5)),
    keys: Number(flag("keys") ?? (quick ? 300 : 1000)),
    dir: flag("dir"),
  };
}

function oneTimeKeys(count: number, offset: number): UploadedKey[] {
  return Array.from({ length: count }, (_, i) => ({
    algorithm: ALG,
    keyId: `K${String(offset + i).padStart(6, "0")}`,
    key: { key: encodeBase64Unpadded(crypto.getRandomValues(new Uint8Array(32))), signatures: {} },
  }));
}

/** One run: upload `keys` one-time keys to a fresh device, then claim them all; claims/s. */
async function runOnce(path: string, scenario: Scenario, keys: number, run: number) {
  const connections = await Promise.all(
    Array.from({ length: scenario.connections }, () => Deno.openKv(path)),
  );
  try {
    const stores = connections.map((kv) => new KvDeviceKeyStore(kv));
    const deviceId = `DEV${run}_${scenario.claimers}_${scenario.connections}`;
    for (let offset = 0; offset < keys; offset += UPLOAD_BATCH) {
      const batch = oneTimeKeys(Math.min(UPLOAD_BATCH, keys - offset), offset);
      await stores[0].upload(USER, deviceId, { oneTimeKeys: batch, fallbackKeys: [] });
    }
    const claimed = new Set<string>();
    const started = performance.now();
    await Promise.all(Array.from({ length: scenario.claimers }, async (_, i) => {
      const store = stores[i % stores.length];
      for (;;) {
        const key = await store.claim(USER, deviceId, ALG);
        if (key === null) return;
        if (claimed.has(key.keyId)) throw new Error(`key ${key.keyId} handed out twice`);
        claimed.add(key.keyId);
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    if (claimed.size !== keys) throw new Error(`claimed ${claimed.size} of ${keys} keys`);
    return keys / seconds;
  } finally {
    for (const kv of connections) kv.close();
  }
}

async function main() {
  const options = parseOptions(Deno.args);
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "bench_keys_" });
  console.log(
    `One-time key claims on a file-backed KV: ${options.keys} keys per run, ` +
      `median of ${options.runs} runs (min-max), claims/s`,
  );
  const rows: string[][] = [];
  try {
    for (const scenario of SCENARIOS) {
      const rates: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        const path = `${dir}/keys_${scenario.claimers}_${scenario.connections}_${run}.sqlite3`;
        rates.push(await runOnce(path, scenario, options.keys, run));
      }
      const summary = summarise(rates);
      rows.push([scenario.name, formatSummary(summary)]);
    }
  } finally {
    if (options.dir === undefined) await Deno.remove(dir, { recursive: true });
  }
  console.log(markdownTable(["scenario", "claims/s: median (min-max)"], rows));
}

if (import.meta.main) await main();
