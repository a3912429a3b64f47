/**
 * The push rule service's memory of derived rulesets: reused while the store's version stands
 * (no record read), dropped when any edit moved it, whichever service (process) made the edit,
 * and never filled by a call that read an older version than the memory stands on.
 */
import { assert, assertEquals } from "../../assert.ts";
import { KvPushRuleStore } from "../../../kv/push_rule_store.ts";
import { PushRuleService } from "../../../domain/push/push_rule_service.ts";
import type { PushRuleStore, StoredPushRules } from "../../../domain/ports/push_rule_store.ts";

/** The KV store, counting record reads and able to hold the next version read. */
class CountingStore implements PushRuleStore {
  recordReads = 0;
  /** When set, `version()` waits for it (a slow read racing another call). */
  gate?: Promise<void>;
  constructor(private readonly inner: KvPushRuleStore) {}
  get(userId: string) {
    return this.inner.get(userId);
  }
  getMany(userIds: readonly string[]): Promise<Map<string, StoredPushRules>> {
    this.recordReads += userIds.length;
    return this.inner.getMany(userIds);
  }
  /** Called once a version was read (before `gate` is waited for). */
  versionRead?: () => void;
  async version() {
    const version = await this.inner.version();
    this.versionRead?.();
    if (this.gate) await this.gate;
    return version;
  }
  put(userId: string, rules: StoredPushRules["rules"], expected: string | null) {
    return this.inner.put(userId, rules, expected);
  }
  changedBetween(userId: string, since: string | undefined, upTo: string) {
    return this.inner.changedBetween(userId, since, upTo);
  }
}

const users = ["@a:x", "@b:x", "@c:x"];
const muteRoom = (roomId: string) => (rules: StoredPushRules["rules"]) => ({
  ...rules,
  rules: { ...rules.rules, room: [{ rule_id: roomId, enabled: true, actions: [] }] },
});

Deno.test("push rule service: rulesets are reused while no edit landed anywhere", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new CountingStore(new KvPushRuleStore(kv));
    const service = new PushRuleService(store);
    await service.rulesetsFor(users);
    assertEquals(store.recordReads, 3);
    await service.rulesetsFor(users);
    await service.rulesetsFor(["@a:x"]);
    assertEquals(store.recordReads, 3);
    await service.rulesetsFor(["@d:x"]);
    assertEquals(store.recordReads, 4);
  } finally {
    kv.close();
  }
});

Deno.test("push rule service: an edit made through another service binds the next evaluation", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new CountingStore(new KvPushRuleStore(kv));
    const a = new PushRuleService(store);
    const b = new PushRuleService(new KvPushRuleStore(kv));
    assertEquals((await a.rulesetsFor(users)).get("@b:x")!.room, []);
    await b.edit("@b:x", muteRoom("!r:x"));
    const after = await a.rulesetsFor(users);
    assertEquals(after.get("@b:x")!.room.map((r) => r.rule_id), ["!r:x"]);
    // Every held ruleset was dropped: all three were read again.
    assertEquals(store.recordReads, 6);
    assertEquals((await a.ruleset("@b:x")).room.map((r) => r.rule_id), ["!r:x"]);
  } finally {
    kv.close();
  }
});

Deno.test("push rule service: a call that read an older version keeps nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new CountingStore(new KvPushRuleStore(kv));
    const service = new PushRuleService(store);
    const other = new PushRuleService(new KvPushRuleStore(kv));
    await service.rulesetsFor(users);
    // A slow call reads the version, then an edit lands and a later call moves the memory on.
    let open = () => {};
    store.gate = new Promise((resolve) => open = resolve);
    const read = new Promise<void>((resolve) => store.versionRead = resolve);
    const slow = service.rulesetsFor(["@d:x"]);
    await read;
    store.versionRead = undefined;
    store.gate = undefined;
    await other.edit("@a:x", muteRoom("!q:x"));
    const fresh = await service.rulesetsFor(["@a:x"]);
    assertEquals(fresh.get("@a:x")!.room.map((r) => r.rule_id), ["!q:x"]);
    open();
    await slow;
    const reads = store.recordReads;
    // @d:x was read by the slow call under the old version: not kept, so read again now.
    await service.rulesetsFor(["@d:x", "@a:x"]);
    assertEquals(store.recordReads, reads + 1);
    assert((await service.rulesetsFor(["@a:x"])).get("@a:x")!.room.length === 1);
  } finally {
    kv.close();
  }
});
