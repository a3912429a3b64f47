/** KvThreepidStore: one owner per address under racing adds, sessions, bindings. */
import { assert, assertEquals } from "../assert.ts";
import { KvThreepidStore } from "../../kv/threepid_store.ts";

const record = (address: string) => ({
  medium: "email" as const,
  address,
  validatedAt: 1,
  addedAt: 2,
});

Deno.test("threepid store: racing adds of one address leave exactly one owner", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvThreepidStore(kv);
    const users = Array.from({ length: 8 }, (_, i) => `@u${i}:example.org`);
    const outcomes = await Promise.all(users.map((u) => store.addThreepid(u, record("a@x.org"))));
    assertEquals(outcomes.filter((o) => o === "added").length, 1);
    const owner = await store.ownerOf("email", "a@x.org");
    assert(owner !== null);
    for (const u of users) {
      assertEquals((await store.listThreepids(u)).length, u === owner ? 1 : 0);
    }
    assertEquals(await store.addThreepid(owner, record("a@x.org")), "already_yours");
    // Removing it from someone else leaves the owner's alone.
    const other = users.find((u) => u !== owner)!;
    assertEquals(await store.removeThreepid(other, "email", "a@x.org"), false);
    assertEquals(await store.ownerOf("email", "a@x.org"), owner);
    assertEquals(await store.removeThreepid(owner, "email", "a@x.org"), true);
    assertEquals(await store.ownerOf("email", "a@x.org"), null);
  } finally {
    kv.close();
  }
});

Deno.test("threepid store: a session is replaced only from the state it was read in", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = 1_000_000;
    const store = new KvThreepidStore(kv, () => now);
    const session = {
      sid: "s1",
      medium: "email" as const,
      address: "a@x.org",
      clientSecret: "c",
      tokenHash: "h",
      sendAttempt: 1,
      expiresAt: now + 60_000,
    };
    await store.putSession(session);
    assertEquals((await store.findPendingSession("email", "c", "a@x.org"))?.sid, "s1");
    const validated = { ...session, validatedAt: now };
    assertEquals(await store.replaceSession(session, validated), true);
    // A second submit racing the first read the old state: refused.
    assertEquals(
      await store.replaceSession(session, { ...validated, validatedAt: now + 1 }),
      false,
    );
    assertEquals((await store.getSession("s1"))?.validatedAt, now);
    // Validated sessions are no longer pending (a new requestToken starts afresh).
    assertEquals(await store.findPendingSession("email", "c", "a@x.org"), null);
  } finally {
    kv.close();
  }
});

Deno.test("threepid store: bindings per identifier and per user", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvThreepidStore(kv);
    const u = "@u:example.org";
    await store.addBinding(u, { medium: "email", address: "a@x.org", idServer: "is1" });
    await store.addBinding(u, { medium: "email", address: "a@x.org", idServer: "is2:8090" });
    await store.addBinding(u, { medium: "email", address: "b@x.org", idServer: "is1" });
    assertEquals((await store.bindings(u, { medium: "email", address: "a@x.org" })).length, 2);
    assertEquals((await store.bindings(u)).length, 3);
    await store.removeBinding(u, { medium: "email", address: "a@x.org", idServer: "is1" });
    assertEquals(await store.bindings(u, { medium: "email", address: "a@x.org" }), [
      { medium: "email", address: "a@x.org", idServer: "is2:8090" },
    ]);
  } finally {
    kv.close();
  }
});
