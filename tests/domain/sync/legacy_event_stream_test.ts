/**
 * The legacy event stream's cut (`cutAtCommit`): the oldest `limit` events across rooms in
 * commit order, never splitting a commit, and never past the last commit of a room that was
 * read short (its rest may be missing).
 */
import { assertEquals } from "../../assert.ts";
import { cutAtCommit, legacyPresence } from "../../../domain/sync/legacy_event_stream.ts";
import type { StoredEvent } from "../../../domain/ports/event_store.ts";

const vs = (n: number) => n.toString(16).padStart(20, "0");

function event(roomId: string, position: number, commit: number): StoredEvent {
  return {
    eventId: `$${roomId}-${position}`,
    roomId,
    position,
    versionstamp: vs(commit),
    status: "accepted",
    pdu: {
      type: "m.room.message",
      sender: "@a:x",
      content: {},
      origin_server_ts: 0,
      room_id: roomId,
      prev_events: [],
      auth_events: [],
      depth: position,
      hashes: { sha256: "" },
      signatures: {},
    } as unknown as StoredEvent["pdu"],
  };
}

const ids = (events: StoredEvent[]) => events.map((e) => e.eventId);
const UP_TO = `s${vs(100)}`;

Deno.test("everything in the window, in commit order, ends at the barrier", () => {
  const { taken, end } = cutAtCommit(
    [
      { roomId: "!b", events: [event("!b", 1, 2), event("!b", 2, 5)], short: false },
      { roomId: "!a", events: [event("!a", 1, 3)], short: false },
    ],
    10,
    UP_TO,
  );
  assertEquals(ids(taken), ["$!b-1", "$!a-1", "$!b-2"]);
  assertEquals(end, UP_TO);
});

Deno.test("a cut takes the oldest limit events and ends at the last one's commit", () => {
  const { taken, end } = cutAtCommit(
    [
      {
        roomId: "!a",
        events: [event("!a", 1, 2), event("!a", 2, 4), event("!a", 3, 6)],
        short: false,
      },
      { roomId: "!b", events: [event("!b", 1, 3), event("!b", 2, 5)], short: false },
    ],
    3,
    UP_TO,
  );
  assertEquals(ids(taken), ["$!a-1", "$!b-1", "$!a-2"]);
  assertEquals(end, `s${vs(4)}`);
});

Deno.test("a cut never splits a commit", () => {
  const { taken, end } = cutAtCommit(
    [
      {
        roomId: "!a",
        events: [event("!a", 1, 2), event("!a", 2, 3), event("!a", 3, 3), event("!a", 4, 3)],
        short: false,
      },
    ],
    2,
    UP_TO,
  );
  assertEquals(ids(taken), ["$!a-1", "$!a-2", "$!a-3", "$!a-4"]);
  assertEquals(end, `s${vs(3)}`);
});

Deno.test("a room read short bounds the cut before its last commit read", () => {
  // !a was read short: more of commit 4 (and later ones) may exist unread.
  const { taken, end } = cutAtCommit(
    [
      { roomId: "!a", events: [event("!a", 1, 2), event("!a", 2, 4)], short: true },
      { roomId: "!b", events: [event("!b", 1, 3), event("!b", 2, 5)], short: false },
    ],
    10,
    UP_TO,
  );
  assertEquals(ids(taken), ["$!a-1", "$!b-1"]);
  assertEquals(end, `s${vs(3)}`);
});

Deno.test("a short room whose first commit is all there is still moves the stream on", () => {
  const { taken, end } = cutAtCommit(
    [
      { roomId: "!a", events: [event("!a", 1, 2), event("!a", 2, 2)], short: true },
    ],
    1,
    UP_TO,
  );
  assertEquals(ids(taken), ["$!a-1", "$!a-2"]);
  assertEquals(end, `s${vs(2)}`);
});

Deno.test("legacy presence carries the user ID in its content", () => {
  assertEquals(
    legacyPresence({ type: "m.presence", sender: "@a:x", content: { presence: "online" } }),
    { type: "m.presence", sender: "@a:x", content: { presence: "online", user_id: "@a:x" } },
  );
});
