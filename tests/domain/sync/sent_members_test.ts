import { assertEquals } from "../../assert.ts";
import {
  dedupesMembers,
  MAX_SENT_MEMBERS,
  SentMembers,
} from "../../../domain/sync/sent_members.ts";
import type { StoredEvent } from "../../../domain/ports/event_store.ts";
import type { SentMember, SentMembersStore } from "../../../domain/ports/sent_members_store.ts";

/** An in-memory store: the logic under test is the domain's, not KV's. */
class MemoryStore implements SentMembersStore {
  readonly values = new Map<string, Map<string, SentMember>>();
  get(userId: string, deviceId: string, roomId: string) {
    return Promise.resolve(new Map(this.values.get(`${userId}|${deviceId}|${roomId}`) ?? []));
  }
  put(userId: string, deviceId: string, roomId: string, sent: ReadonlyMap<string, SentMember>) {
    this.values.set(`${userId}|${deviceId}|${roomId}`, new Map(sent));
    return Promise.resolve();
  }
}

function memberEvent(userId: string, eventId: string): StoredEvent {
  return {
    eventId,
    roomId: "!r:x",
    status: "accepted",
    position: 1,
    versionstamp: "0".repeat(20),
    pdu: {
      type: "m.room.member",
      state_key: userId,
      sender: userId,
      content: { membership: "join" },
    } as unknown as StoredEvent["pdu"],
  };
}

const token = (n: number) => `s${n.toString(16).padStart(20, "0")}`;
const scope = (since: number | undefined, upTo: number, fullState = false) => ({
  userId: "@a:x",
  deviceId: "D",
  roomId: "!r:x",
  since: since === undefined ? undefined : token(since),
  upTo: token(upTo),
  fullState,
});

Deno.test("only lazy loading without include_redundant_members dedupes", () => {
  assertEquals(dedupesMembers({ room: { state: { lazy_load_members: true } } }), true);
  assertEquals(
    dedupesMembers({
      room: { state: { lazy_load_members: true, include_redundant_members: true } },
    }),
    false,
  );
  assertEquals(dedupesMembers({}), false);
});

Deno.test("a member counts as known only from responses up to the since token", async () => {
  const store = new MemoryStore();
  const sent = new SentMembers(store);
  const bob = memberEvent("@b:x", "$b1");
  // Initial sync (token 10) sends Bob.
  await sent.remember(scope(undefined, 10), await sent.known(scope(undefined, 10)), [bob]);
  // From 10: known, dropped.
  const known = await sent.known(scope(10, 20));
  assertEquals(sent.dropKnown(scope(10, 20), known, [bob]), []);
  // From an older token (the client never got response 10): sent again.
  assertEquals(sent.dropKnown(scope(5, 20), await sent.known(scope(5, 20)), [bob]), [bob]);
  // full_state drops nothing; a changed member event is new.
  assertEquals(sent.dropKnown(scope(10, 20, true), known, [bob]), [bob]);
  const bob2 = memberEvent("@b:x", "$b2");
  assertEquals(sent.dropKnown(scope(10, 20), known, [bob2]), [bob2]);
  // Sending it again keeps the earlier token: the client has had it since then.
  await sent.remember(scope(5, 30), await sent.known(scope(5, 30)), [bob]);
  assertEquals((await sent.known(scope(10, 40))).get("@b:x"), { eventId: "$b1", token: token(10) });
});

Deno.test("an initial sync starts afresh, and the memory is bounded", async () => {
  const store = new MemoryStore();
  const sent = new SentMembers(store);
  const many = Array.from(
    { length: MAX_SENT_MEMBERS + 5 },
    (_, i) => memberEvent(`@u${i}:x`, `$${i}`),
  );
  await sent.remember(scope(undefined, 10), new Map(), many.slice(0, 3));
  await sent.remember(scope(10, 20), await sent.known(scope(10, 20)), many.slice(3));
  const known = await sent.known(scope(20, 30));
  assertEquals(known.size, MAX_SENT_MEMBERS);
  // The oldest entries went first.
  assertEquals(known.has("@u0:x"), false);
  // A fresh start forgets what earlier sync chains were sent.
  await sent.remember(scope(undefined, 40), new Map(), [memberEvent("@z:x", "$z")]);
  assertEquals([...(await sent.known(scope(40, 50))).keys()], ["@z:x"]);
});
