/**
 * The KV handle for a shared local file retries commits SQLite refuses as busy: two handles on
 * one file (two SQLite connections, as two processes have) committing checked writes all at once
 * never see "database is locked", and each commit lands once.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { retryingBusyCommits } from "../../kv/busy_retry_kv.ts";
import { openKv } from "../../kv/open_kv.ts";

/** `writers` concurrent loops per handle, each `rounds` read-check-write commits of its own key. */
async function checkedWrites(handles: Deno.Kv[], writers: number, rounds: number) {
  let committed = 0;
  let busy = 0;
  await Promise.all(handles.flatMap((kv, h) =>
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < rounds; i++) {
        const key = ["own", h, w];
        const entry = await kv.get<number>(key);
        try {
          const result = await kv.atomic().check(entry).set(key, (entry.value ?? 0) + 1).commit();
          // Each loop is the only writer of its key: a check can only fail if KV misbehaves.
          assert(result.ok, "a check on a key nobody else writes failed");
          committed++;
        } catch (error) {
          if (!String(error).includes("database is locked")) throw error;
          busy++;
        }
      }
    })
  ));
  return { committed, busy };
}

Deno.test("two handles on one KV file: checked commits retried through busy refusals", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tessera-busy-" });
  const handles = [await openKv(`${dir}/shared.kv`), await openKv(`${dir}/shared.kv`)];
  try {
    const { committed, busy } = await checkedWrites(handles, 4, 50);
    assertEquals(busy, 0);
    assertEquals(committed, 2 * 4 * 50);
    for (let h = 0; h < 2; h++) {
      for (let w = 0; w < 4; w++) assertEquals((await handles[0].get(["own", h, w])).value, 50);
    }
  } finally {
    for (const kv of handles) kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A stand-in operation whose commit throws `errors` in turn, then succeeds. */
function flakyKv(errors: Error[]): { kv: Deno.Kv; commits: () => number } {
  let commits = 0;
  const op = {
    set() {
      return op;
    },
    commit() {
      commits++;
      const error = errors.shift();
      return error ? Promise.reject(error) : Promise.resolve({ ok: true, versionstamp: "01" });
    },
  };
  const kv = { atomic: () => op, close() {} } as unknown as Deno.Kv;
  return { kv, commits: () => commits };
}

Deno.test("busy retry: only the busy error is retried, and only so often", async () => {
  const busy = () => new TypeError("database is locked");
  const twice = flakyKv([busy(), busy()]);
  const result = await retryingBusyCommits(twice.kv).atomic().set(["k"], 1).commit();
  assertEquals(result.ok, true);
  assertEquals(twice.commits(), 3);

  const other = flakyKv([new TypeError("Value too large")]);
  await assertRejects(
    () => retryingBusyCommits(other.kv).atomic().commit(),
    /too large/,
  );
  assertEquals(other.commits(), 1);

  const always = flakyKv(Array.from({ length: 10 }, busy));
  await assertRejects(
    () => retryingBusyCommits(always.kv, 3).atomic().commit(),
    /locked/,
  );
  assertEquals(always.commits(), 3);
});

Deno.test("busy retry: a retried commit is applied once (a sum in checked commits adds up to the commits exactly)", async () => {
  // Were a refused commit partly or wholly written, the retry would add its sum again: the
  // shared counter would exceed the number of commits. SQLite takes the write lock at the
  // commit's first write (the data version), so a busy refusal comes before any mutation.
  const dir = await Deno.makeTempDir({ prefix: "tessera-busy-sum-" });
  const handles = [await openKv(`${dir}/shared.kv`), await openKv(`${dir}/shared.kv`)];
  const rounds = 40;
  try {
    await Promise.all(handles.flatMap((kv, h) =>
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; i < rounds; i++) {
          const own = await kv.get<number>(["own", h, w]);
          const result = await kv.atomic()
            .check(own)
            .set(["own", h, w], (own.value ?? 0) + 1)
            .sum(["total"], 1n)
            .commit();
          assert(result.ok, "a check on a key nobody else writes failed");
          // A blind sum alone (no read first) contends for the write lock too.
          await kv.atomic().sum(["blind"], 1n).commit();
        }
      })
    ));
    const total = await handles[1].get<Deno.KvU64>(["total"]);
    const blind = await handles[0].get<Deno.KvU64>(["blind"]);
    assertEquals(total.value?.value, BigInt(2 * 4 * rounds));
    assertEquals(blind.value?.value, BigInt(2 * 4 * rounds));
  } finally {
    for (const kv of handles) kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
