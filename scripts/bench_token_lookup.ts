/**
 * What resolving an access token costs on a KV file, to choose how a revocation reaches every
 * process (issue 8, finding 11): reading the token record on every request, reading it together
 * with a revocation-version key (what a cache checked against KV would need), or a hit in an
 * in-memory cache (fast, but blind to a logout made by another process).
 *
 * `deno run --allow-all scripts/bench_token_lookup.ts [--tokens=N] [--lookups=N] [--runs=N]`
 */
import { AccountService } from "../domain/accounts/account_service.ts";
import { PasswordHasher } from "../domain/accounts/password_hash.ts";
import { tokenHash } from "../domain/accounts/tokens.ts";
import { KvAccountStore } from "../kv/account_store.ts";
import { accountKeys } from "../kv/schema.ts";
import { formatSummary, markdownTable, summarise } from "./bench_stats.ts";

function flag(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.split("=")[1]) : fallback;
}

const TOKENS = flag("tokens", 500);
const LOOKUPS = flag("lookups", 5_000);
const RUNS = flag("runs", 5);
const CONCURRENCY = 16;

/** Lookups per second of `lookup` over the tokens, `CONCURRENCY` in flight. */
async function rate(tokens: string[], lookup: (token: string) => Promise<unknown>) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < LOOKUPS) {
        const i = next++;
        if (!(await lookup(tokens[i % tokens.length]))) throw new Error("token did not resolve");
      }
    }),
  );
  return LOOKUPS / ((performance.now() - started) / 1000);
}

const dir = await Deno.makeTempDir({ prefix: "tessera-bench-tokens-" });
const kv = await Deno.openKv(`${dir}/bench.kv`);
try {
  const store = new KvAccountStore(kv);
  const accounts = new AccountService({
    store,
    serverName: "bench.example",
    hasher: new PasswordHasher(),
  });
  const tokens: string[] = [];
  for (let i = 0; i < TOKENS; i++) {
    const issued = await accounts.register({ localpart: `user${i}` });
    tokens.push(issued.accessToken!);
  }
  // The revocation-version key a checked cache would read beside the token (one per user).
  const versionKey = (userId: string): Deno.KvKey => ["bench_token_version", userId];
  for (let i = 0; i < TOKENS; i++) await kv.set(versionKey(`@user${i}:bench.example`), 0);
  const memory = new Map<string, unknown>();
  for (const token of tokens) {
    memory.set(tokenHash(token), await store.getAccessToken(tokenHash(token)));
  }

  const scenarios: [string, (token: string) => Promise<unknown>][] = [
    ["resolveAccessToken (one kv.get per request)", (t) => accounts.resolveAccessToken(t)],
    [
      "token + revocation key (one getMany of 2)",
      async (t) => {
        const hash = tokenHash(t);
        const cached = memory.get(hash) as { userId: string };
        const [token] = await kv.getMany([
          accountKeys.accessToken(hash),
          versionKey(cached.userId),
        ]);
        return token.value;
      },
    ],
    ["in-memory cache hit (no KV read)", (t) => Promise.resolve(memory.get(tokenHash(t)))],
  ];
  const rows: string[][] = [];
  for (const [name, lookup] of scenarios) {
    const runs: number[] = [];
    for (let r = 0; r < RUNS; r++) runs.push(await rate(tokens, lookup));
    const summary = summarise(runs);
    rows.push([name, formatSummary(summary), `${(1e6 / summary.median).toFixed(1)}`]);
  }
  console.log(
    `Token lookups on a KV file, ${TOKENS} tokens, ${CONCURRENCY} in flight, median of ${RUNS} ` +
      `runs of ${LOOKUPS}. Deno ${Deno.version.deno}.\n`,
  );
  console.log(markdownTable(["lookup", "lookups/s (min-max)", "µs each"], rows));
} finally {
  kv.close();
  await Deno.remove(dir, { recursive: true });
}
