/**
 * Losing races: a busy local database counts as a failed check, and a write that never wins
 * answers 503 (clients retry) instead of failing as a server error.
 */
import { assert, assertEquals } from "../assert.ts";
import { commitOrConflict, isDatabaseBusy } from "../../kv/commit_retry.ts";
import { writeVersioned } from "../../kv/versioned_records.ts";
import { MatrixError } from "../../domain/errors.ts";

Deno.test("a busy database is a lost race, other errors are not", () => {
  assert(isDatabaseBusy(new Error("database is locked")));
  assert(isDatabaseBusy(new Error("SQLITE_BUSY: try again")));
  assert(!isDatabaseBusy(new Error("value too large")));
  assert(!isDatabaseBusy("database is locked"));
});

Deno.test("commitOrConflict reports a busy commit as not ok and rethrows anything else", async () => {
  const failing = (message: string) =>
    ({ commit: () => Promise.reject(new Error(message)) }) as unknown as Deno.AtomicOperation;
  assertEquals(await commitOrConflict(failing("database is locked")), { ok: false });
  let thrown: unknown;
  try {
    await commitOrConflict(failing("value too large"));
  } catch (error) {
    thrown = error;
  }
  assert(thrown instanceof Error && thrown.message === "value too large");
});

Deno.test("a write that keeps losing its check answers 503 M_UNKNOWN, not a 500", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    // Every commit finds its check broken, as under writers that always get in first.
    const losing = new Proxy(kv, {
      get(target, prop) {
        if (prop === "atomic") {
          return () => {
            const op = target.atomic();
            op.commit = () => Promise.resolve({ ok: false } as Deno.KvCommitError);
            return op;
          };
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    let thrown: unknown;
    try {
      await writeVersioned(losing, ["record"], () => ({
        key: ["record"],
        value: 1,
        changePrefix: ["record_change"],
      }));
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof MatrixError, String(thrown));
    assertEquals([thrown.status, thrown.errcode], [503, "M_UNKNOWN"]);
    assertEquals((await kv.get(["record"])).value, null, "nothing was written");
  } finally {
    kv.close();
  }
});
