/**
 * A malicious server (or client) against the federation EDU handlers and the stores behind
 * them: what one server may make this server write, keep or show, beyond what its users are
 * entitled to. Each test names the abuse and what must hold instead.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  MAX_REMOTE_TYPING_PER_SERVER,
  TypingService,
} from "../../domain/ephemeral/typing_service.ts";
import type { StoredEvent } from "../../domain/ports/event_store.ts";
import type { Pdu } from "../../domain/protocol/events.ts";
import { KvTypingStore } from "../../kv/typing_store.ts";

const ROOM = "!room:a.test";
const ALICE = "@alice:a.test";

/** Event reads where everyone is joined to ROOM. */
const joinedEverywhere = {
  currentStateEventId: (_roomId: string, _type: string, stateKey: string) =>
    Promise.resolve(`$member-${stateKey}`),
  getEvent: (eventId: string): Promise<StoredEvent | null> =>
    Promise.resolve({
      eventId,
      roomId: ROOM,
      pdu: { content: { membership: "join" } } as unknown as Pdu,
      status: "accepted",
      position: 7,
      versionstamp: "v",
    }),
};

Deno.test("remote typing: one server's many joined puppets cannot fill a room's typing record and break local typing", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvTypingStore(kv);
  const service = new TypingService({ store, events: joinedEverywhere });
  try {
    // evil.test joined 2,000 puppets to a public room and sends each one's typing (an m.typing
    // EDU per user passes every check: user of the origin, joined, room shared).
    const failures: unknown[] = [];
    for (let i = 0; i < 2_000; i++) {
      await service.setRemoteTyping(`@puppet-number-${i}:evil.test`, ROOM, true, 60_000)
        .catch((error) => failures.push(error));
    }
    assertEquals(failures, []);
    // A local user typing in that room still works (the record must still fit a KV value), and
    // so does another server's user (one server takes only its share).
    await service.setTyping(ALICE, ROOM, true, 30_000);
    await service.setRemoteTyping("@bob:b.test", ROOM, true, 60_000);
    let users: Record<string, number> = {};
    await store.update(ROOM, (current) => {
      users = current;
      return null;
    });
    assert(ALICE in users && "@bob:b.test" in users);
    const puppets = Object.keys(users).filter((u) => u.endsWith(":evil.test"));
    assertEquals(puppets.length, MAX_REMOTE_TYPING_PER_SERVER);
  } finally {
    service.stop();
    kv.close();
  }
});
