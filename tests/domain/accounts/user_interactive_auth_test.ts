import { assert, assertEquals } from "../../assert.ts";
import { forbidden, MatrixError } from "../../../domain/errors.ts";
import {
  UiaRefusal,
  type UiaRequest,
  UiaRequiredError,
  type UiaSessionStore,
  UserInteractiveAuth,
} from "../../../domain/accounts/user_interactive_auth.ts";
import type { UiaSessionRecord } from "../../../domain/ports/account_store.ts";

function memoryStore(): UiaSessionStore & { sessions: Map<string, UiaSessionRecord> } {
  const sessions = new Map<string, UiaSessionRecord>();
  return {
    sessions,
    getUiaSession: (id) => Promise.resolve(structuredClone(sessions.get(id)) ?? null),
    putUiaSession: (s) => Promise.resolve(void sessions.set(s.id, structuredClone(s))),
    deleteUiaSession: (id) => Promise.resolve(void sessions.delete(id)),
  };
}

async function challenge(uia: UserInteractiveAuth, request: UiaRequest): Promise<UiaRequiredError> {
  try {
    await uia.authenticate(request);
  } catch (error) {
    if (error instanceof UiaRequiredError) return error;
    throw error;
  }
  throw new Error("expected a challenge");
}

const twoStages = (auth: unknown): UiaRequest => ({
  action: "test",
  auth,
  flows: [{ stages: ["a", "b"] }],
  params: { a: { hint: 1 } },
  stages: {
    a: () => Promise.resolve({ fromA: true }),
    b: (dict) => dict.ok ? Promise.resolve() : Promise.reject(forbidden("b failed")),
  },
});

Deno.test("UIA: stages across requests, failures keep the session, completion deletes it", async () => {
  const now = 1000;
  const store = memoryStore();
  const uia = new UserInteractiveAuth(store, () => now, 60_000);
  const first = await challenge(uia, twoStages(undefined));
  assertEquals(first.status, 401);
  const body = first.toJSON();
  assertEquals(body.flows, [{ stages: ["a", "b"] }]);
  assertEquals(body.params, { a: { hint: 1 } });
  assertEquals(body.errcode, undefined);
  const session = body.session as string;

  // b cannot come before a.
  const outOfOrder = await uia.authenticate(twoStages({ type: "b", session, ok: true })).catch((
    e,
  ) => e);
  assert(outOfOrder instanceof MatrixError && outOfOrder.errcode === "M_UNRECOGNIZED");

  const afterA = await challenge(uia, twoStages({ type: "a", session }));
  assertEquals(afterA.toJSON().completed, ["a"]);
  const failedB = await challenge(uia, twoStages({ type: "b", session, ok: false }));
  assertEquals(failedB.toJSON().errcode, "M_FORBIDDEN");
  assertEquals(failedB.toJSON().completed, ["a"]);
  // Auth with only the session reports progress.
  assertEquals((await challenge(uia, twoStages({ session }))).toJSON().completed, ["a"]);

  const done = await uia.authenticate(twoStages({ type: "b", session, ok: true }));
  assertEquals(done.results, { fromA: true });
  assertEquals(store.sessions.size, 0);

  // A session the store no longer has (expired or used) is refused.
  const stale = (await challenge(uia, twoStages(undefined))).toJSON().session as string;
  store.sessions.delete(stale);
  const refused = await uia.authenticate(twoStages({ type: "a", session: stale })).catch((e) => e);
  assert(refused instanceof MatrixError && refused.status === 400);
  assertEquals(now, 1000);
});

Deno.test("UIA: sessions are bound to their action and user", async () => {
  const uia = new UserInteractiveAuth(memoryStore());
  const request = (action: string, userId: string, auth: unknown): UiaRequest => ({
    action,
    userId,
    auth,
    flows: [{ stages: ["x"] }],
    stages: { x: () => Promise.resolve() },
  });
  const session = (await challenge(uia, request("delete", "@a:s", undefined))).toJSON().session;
  for (const [action, user] of [["password", "@a:s"], ["delete", "@b:s"]]) {
    const error = await uia.authenticate(request(action, user, { type: "x", session })).catch((
      e,
    ) => e);
    assert(error instanceof MatrixError && error.status === 400, `${action} ${user}`);
  }
  const ok = await uia.authenticate(request("delete", "@a:s", { type: "x", session }));
  assertEquals(ok.action, "delete");
  const badAuth = await uia.authenticate(request("delete", "@a:s", "x")).catch((e) => e);
  assertEquals(badAuth.errcode, "M_BAD_JSON");
});

Deno.test("UIA: a session is bound to its operation; parameters and completion can be kept", async () => {
  const store = memoryStore();
  const uia = new UserInteractiveAuth(store, () => 1000, 60_000);
  const forDevice = (operation: string, auth: unknown): UiaRequest => ({
    ...twoStages(auth),
    flows: [{ stages: ["a"] }],
    operation,
    clientParams: { device: operation },
    keepCompleted: true,
  });
  const first = await challenge(uia, forDevice("one", undefined));
  const session = first.toJSON().session as string;
  // The first challenge lists no completed stages, but carries the key.
  assertEquals(first.toJSON().completed, []);
  assertEquals(store.sessions.get(session)?.params, { device: "one" });

  // Continuing the session for another operation is refused, and completes nothing.
  const other = await uia.authenticate(forDevice("two", { type: "a", session })).catch((e) => e);
  assert(other instanceof MatrixError && other.status === 403 && other.errcode === "M_FORBIDDEN");
  assertEquals(store.sessions.get(session)?.completed, []);

  // The right operation completes, and the session is kept for a retry of the same request.
  const done = await uia.authenticate(forDevice("one", { type: "a", session }));
  assertEquals(done.completed, ["a"]);
  await uia.remember(done, { registered: "@u:x" });
  const peeked = await uia.peek(session, "test");
  assertEquals(peeked?.results.registered, "@u:x");
  assertEquals(await uia.peek(session, "another_action"), null);
  const again = await uia.authenticate(forDevice("one", { type: "a", session }));
  assertEquals(again.results.registered, "@u:x");
});

Deno.test("UIA: a stage's UiaRefusal ends the request with its own error, not a challenge", async () => {
  const uia = new UserInteractiveAuth(memoryStore(), () => 1000, 60_000);
  const request = (auth: unknown): UiaRequest => ({
    action: "test",
    auth,
    flows: [{ stages: ["a"] }],
    stages: { a: () => Promise.reject(new UiaRefusal("M_FORBIDDEN", 403, "someone else")) },
  });
  const session = (await challenge(uia, request(undefined))).toJSON().session;
  const refused = await uia.authenticate(request({ type: "a", session })).catch((e) => e);
  assert(refused instanceof UiaRefusal);
  assertEquals(refused.status, 403);
  assert(!(refused instanceof UiaRequiredError));
});
