import { assert, assertEquals } from "../assert.ts";
import { KvAccountStore } from "../../kv/account_store.ts";
import { accountKeys } from "../../kv/schema.ts";

Deno.test("KvAccountStore: tokens replaced and revoked with their device; only hashes stored", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvAccountStore(kv);
  const user = "@a:s";
  assert(await store.createAccount({ userId: user, createdAt: 1, deactivated: false }));
  assertEquals(
    await store.createAccount({ userId: user, createdAt: 2, deactivated: false }),
    false,
  );
  const access = { userId: user, deviceId: "D", tokenId: "t1" };
  await store.issueTokens(user, "D", (d) => d ?? { userId: user, deviceId: "D", createdAt: 1 }, {
    accessHash: "h1",
    access,
    refreshHash: "r1",
  });
  assertEquals(await store.getAccessToken("h1"), access);
  assertEquals(await store.getRefreshToken("r1"), { userId: user, deviceId: "D" });
  await store.issueTokens(user, "D", (d) => d!, {
    accessHash: "h2",
    access: { ...access, tokenId: "t2" },
  });
  assertEquals(await store.getAccessToken("h1"), null);
  assertEquals(await store.getRefreshToken("r1"), null);
  assertEquals((await store.getDevice(user, "D"))?.accessTokenHash, "h2");
  assert(await store.updateDevice(user, "D", (d) => ({ ...d, displayName: "n" })));
  assertEquals((await store.getDevice(user, "D"))?.accessTokenHash, "h2");
  assertEquals(await store.deleteDevices(user, ["D", "D", "X"]), ["h2"]);
  assertEquals(await store.getAccessToken("h2"), null);
  assertEquals(await store.listDevices(user), []);
  assertEquals((await kv.get(accountKeys.accessToken("h2"))).value, null);
});

Deno.test("KvAccountStore: UIA sessions and login tokens expire; login tokens are single use", async () => {
  using kv = await Deno.openKv(":memory:");
  let now = 1_000;
  const store = new KvAccountStore(kv, () => now);
  await store.putUiaSession({
    id: "s",
    action: "x",
    completed: [],
    results: {},
    expiresAt: 2_000,
  });
  assertEquals((await store.getUiaSession("s"))?.action, "x");
  await store.putLoginToken("l1", { userId: "@a:s", expiresAt: 2_000 });
  await store.putLoginToken("l2", { userId: "@a:s", expiresAt: 2_000 });
  assertEquals((await store.takeLoginToken("l1"))?.userId, "@a:s");
  assertEquals(await store.takeLoginToken("l1"), null);
  now = 2_000;
  assertEquals(await store.getUiaSession("s"), null);
  assertEquals(await store.takeLoginToken("l2"), null);
});
