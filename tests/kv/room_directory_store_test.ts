/** The KV room directory store: aliases both ways, taken aliases, visibility, forgotten rooms. */
import { assert, assertEquals } from "../assert.ts";
import { KvRoomDirectoryStore } from "../../kv/room_directory_store.ts";

Deno.test("aliases map both ways, a taken alias is refused, deletion removes both entries", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRoomDirectoryStore(kv);
    const record = { alias: "#a:x", roomId: "!r:x", creator: "@u:x" };
    assert(await store.createAlias(record));
    assertEquals(await store.createAlias({ ...record, roomId: "!other:x" }), false);
    assertEquals(await store.resolveAlias("#a:x"), record);
    assertEquals(await store.aliasesOfRoom("!r:x"), ["#a:x"]);
    assertEquals(await store.aliasesOfRoom("!other:x"), []);
    assert(await store.deleteAlias("#a:x"));
    assertEquals(await store.deleteAlias("#a:x"), false);
    assertEquals(await store.resolveAlias("#a:x"), null);
    assertEquals(await store.aliasesOfRoom("!r:x"), []);
  } finally {
    kv.close();
  }
});

Deno.test("visibility and forgotten marks are set and cleared by their mutations", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRoomDirectoryStore(kv);
    assertEquals(await store.visibility("!r:x"), "private");
    assert(await store.commit(store.visibilityMutations("!r:x", "public")));
    assertEquals(await store.visibility("!r:x"), "public");
    assertEquals(await store.publishedRooms(), ["!r:x"]);
    assert(await store.commit(store.visibilityMutations("!r:x", "private")));
    assertEquals(await store.publishedRooms(), []);
    assert(await store.commit(store.forgottenMutations("@u:x", "!r:x", true)));
    assert(await store.isForgotten("@u:x", "!r:x"));
    assert(await store.commit(store.forgottenMutations("@u:x", "!r:x", false)));
    assertEquals(await store.isForgotten("@u:x", "!r:x"), false);
  } finally {
    kv.close();
  }
});
