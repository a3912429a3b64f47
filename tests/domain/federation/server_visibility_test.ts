/**
 * What a remote server may see of a room's events (domain/federation/server_visibility.ts), over
 * an in-memory event reader whose state after each event is spelled out.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  serverMayViewEvent,
  serverOfUserId,
  type ServerReadEvent,
  ServerVisibility,
} from "../../../domain/federation/server_visibility.ts";
import { type StateKey, stateKey, type StateMap } from "../../../domain/protocol/events.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { Membership, StoredEvent } from "../../../domain/ports/event_store.ts";

const ROOM = "!room:a.org";

/** A room built event by event: each event's state after it is the one before plus itself. */
function room() {
  const events = new Map<string, StoredEvent>();
  const after = new Map<string, StateMap>();
  let state: StateMap = new Map();
  let position = 0;
  const add = (
    id: string,
    type: string,
    content: JsonObject,
    key?: string,
    sender = "@alice:a.org",
  ) => {
    const event: StoredEvent = {
      eventId: id,
      roomId: ROOM,
      pdu: {
        type,
        sender,
        content,
        ...(key !== undefined ? { state_key: key } : {}),
      } as unknown as StoredEvent["pdu"],
      status: "accepted",
      position: ++position,
      versionstamp: "00",
    };
    events.set(id, event);
    if (key !== undefined) state = new Map([...state, [stateKey(type, key), id]]);
    after.set(id, state);
    return event;
  };
  const members = (memberships?: readonly string[]) => {
    const out: Membership[] = [];
    for (const [key, id] of state) {
      if (!key.startsWith("m.room.member\u0000")) continue;
      const m = events.get(id)!.pdu.content.membership as string;
      if (memberships && !memberships.includes(m)) continue;
      out.push({ userId: key.split("\u0000")[1], roomId: ROOM, membership: m, eventId: id });
    }
    return out;
  };
  const store = {
    getEvent: (id: string) => Promise.resolve(events.get(id) ?? null),
    getEvents: (ids: readonly string[]) =>
      Promise.resolve(new Map(ids.flatMap((id) => events.has(id) ? [[id, events.get(id)!]] : []))),
    stateAtEvent: (id: string, at: "before" | "after") => {
      assertEquals(at, "after");
      return Promise.resolve(after.has(id) ? new Map(after.get(id)!) : null);
    },
    currentStateEventId: (_roomId: string, type: string, key: string) =>
      Promise.resolve(state.get(stateKey(type, key) as StateKey) ?? null),
    isServerInRoom: (_roomId: string, server: string) =>
      Promise.resolve(members(["join"]).some((m) => serverOfUserId(m.userId) === server)),
  };
  const message = (id: string, sender?: string) =>
    add(id, "m.room.message", { msgtype: "m.text", body: id }, undefined, sender);
  const visibility = (id: string, hv: string) =>
    add(id, "m.room.history_visibility", { history_visibility: hv }, "");
  const member = (id: string, userId: string, membership: string) =>
    add(id, "m.room.member", { membership }, userId, userId);
  return { store, add, message, visibility, member, events };
}

Deno.test("serverMayViewEvent: shared and world_readable show all; invited needs an invite or join; joined a join", () => {
  assert(serverMayViewEvent("shared", []));
  assert(serverMayViewEvent("world_readable", []));
  assert(!serverMayViewEvent("invited", []));
  assert(!serverMayViewEvent("invited", ["leave", "ban"]));
  assert(serverMayViewEvent("invited", ["invite"]));
  assert(serverMayViewEvent("invited", ["leave", "join"]));
  assert(!serverMayViewEvent("joined", ["invite"]));
  assert(serverMayViewEvent("joined", ["invite", "join"]));
});

Deno.test("serverOfUserId takes everything after the first colon (ports and IPv6 included)", () => {
  assertEquals(serverOfUserId("@a:b.org"), "b.org");
  assertEquals(serverOfUserId("@a:b.org:8448"), "b.org:8448");
  assertEquals(serverOfUserId("@a:[::1]:8448"), "[::1]:8448");
  assertEquals(serverOfUserId("nocolon"), undefined);
});

Deno.test("a server whose user joined later sees no joined-visibility history from before the join", async () => {
  const r = room();
  const ids = (events: StoredEvent[]) => events.map((e) => e.eventId);
  const all = [
    r.add("$create", "m.room.create", { creator: "@alice:a.org" }, ""),
    r.member("$alice", "@alice:a.org", "join"),
    r.message("$shared1"),
    r.visibility("$hv_joined", "joined"),
    r.message("$joined1"),
    r.member("$bob_invite", "@bob:b.org", "invite"),
    r.message("$joined2"),
    r.visibility("$hv_invited", "invited"),
    r.message("$invited1"),
    r.member("$bob_join", "@bob:b.org", "join"),
    r.message("$after_join"),
    r.member("$bob_leave", "@bob:b.org", "leave"),
    r.message("$after_leave"),
  ];
  const visibility = new ServerVisibility(r.store);
  const hidden = await visibility.hiddenFrom("b.org", all);
  assertEquals(
    ids(all.filter((e) => hidden.has(e.eventId))),
    ["$hv_joined", "$joined1", "$joined2", "$after_leave"],
  );
  // Another server with no users in the room sees only what `shared` covered.
  const other = await visibility.hiddenFrom("c.org", all);
  assertEquals(ids(all.filter((e) => !other.has(e.eventId))), ["$create", "$alice", "$shared1"]);
});

Deno.test("world_readable history is visible to every server; outliers count as shared", async () => {
  const r = room();
  r.add("$create", "m.room.create", { creator: "@alice:a.org" }, "");
  r.visibility("$hv", "joined");
  const hiddenMsg = r.message("$hidden");
  r.visibility("$wr", "world_readable");
  const open = r.message("$open");
  const outlier: ServerReadEvent = { ...hiddenMsg, eventId: "$outlier", outlier: true };
  const hidden = await new ServerVisibility(r.store).hiddenFrom("c.org", [
    hiddenMsg,
    open,
    outlier,
  ]);
  assertEquals([...hidden], ["$hidden"]);
});

Deno.test("an unknown history_visibility value widens nothing: it is shared", async () => {
  const r = room();
  r.add("$create", "m.room.create", { creator: "@alice:a.org" }, "");
  r.visibility("$hv", "everyone!");
  const msg = r.message("$msg");
  assertEquals((await new ServerVisibility(r.store).hiddenFrom("c.org", [msg])).size, 0);
});

Deno.test("room access: a joined user of the server, or a world-readable room", async () => {
  const r = room();
  r.add("$create", "m.room.create", { creator: "@alice:a.org" }, "");
  r.member("$alice", "@alice:a.org", "join");
  r.member("$bob", "@bob:b.org", "invite");
  const visibility = new ServerVisibility(r.store);
  assert(await visibility.serverInRoom(ROOM, "a.org"));
  assert(!(await visibility.serverInRoom(ROOM, "b.org")));
  assert(!(await visibility.mayReadRoom(ROOM, "b.org")));
  r.member("$bob_join", "@bob:b.org", "join");
  assert(await visibility.mayReadRoom(ROOM, "b.org"));
  assert(!(await visibility.mayReadRoom(ROOM, "c.org")));
  r.visibility("$wr", "world_readable");
  assert(await visibility.mayReadRoom(ROOM, "c.org"));
  // A user ID whose server merely ends like the origin's is not the origin's.
  r.member("$evil", "@x:evil-b.org", "join");
  assert(!(await visibility.serverInRoom(ROOM, "b.org:1")));
});
