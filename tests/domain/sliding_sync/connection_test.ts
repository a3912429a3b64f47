/**
 * Sliding-sync connection positions: confirming a child, answering a retried pos as if the lost
 * answer never happened, and recognising a losing sibling's room records however late.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  childOf,
  type ConnectionHead,
  effectiveRoom,
  encodePos,
  MAX_ISSUED,
  type PositionState,
  resolvePosition,
  type RoomEntry,
  type SentRoom,
  stampRoom,
  withIssued,
} from "../../../domain/sliding_sync/connection.ts";
import { MatrixError } from "../../../domain/errors.ts";

/** A tiny connection: heads and room records in memory, as the service drives them. */
class Connection {
  head: ConnectionHead | undefined;
  readonly rooms = new Map<string, RoomEntry>();

  /** Answer `pos`, sending `sent` rooms at `token`; returns the new pos. */
  answer(pos: string | undefined, token: string, sent: string[]): string {
    const { head, base } = resolvePosition(this.head, pos);
    const child = childOf(base, { token, subscriptions: {}, listCounts: {} });
    for (const roomId of sent) {
      this.rooms.set(
        roomId,
        stampRoom(head, base, child, this.rooms.get(roomId), { sentAt: token, config: "k" }),
      );
    }
    this.head = withIssued(head, child, {});
    return encodePos(this.head.generation, child);
  }

  /** What the connection holds for a room as of `pos`. */
  held(pos: string, roomId: string): SentRoom | null {
    const { head, base } = resolvePosition(this.head, pos);
    return effectiveRoom(head, base, this.rooms.get(roomId));
  }
}

function unknownPos(fn: () => unknown): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert(error instanceof MatrixError, "throws a MatrixError");
  assertEquals(error.errcode, "M_UNKNOWN_POS");
  assertEquals(error.status, 400);
}

Deno.test("a confirmed pos sees what its answer sent; a retried pos does not", () => {
  const conn = new Connection();
  const p1 = conn.answer(undefined, "s1", ["!a"]);
  assertEquals(conn.held(p1, "!a")?.sentAt, "s1");
  // p1 sent: its answer p2 sends !b (the answer is lost).
  const p2 = conn.answer(p1, "s2", ["!a", "!b"]);
  // The client retries p1: it holds !a as of s1 and never had !b.
  assertEquals(conn.held(p1, "!a")?.sentAt, "s1");
  assertEquals(conn.held(p1, "!b"), null);
  const p2b = conn.answer(p1, "s3", ["!c"]);
  // The client uses the retry's answer: p2 lost, its !a and !b records are not this chain's.
  assertEquals(conn.held(p2b, "!c")?.sentAt, "s3");
  assertEquals(conn.held(p2b, "!a")?.sentAt, "s1");
  assertEquals(conn.held(p2b, "!b"), null);
  // Once the client sent p2b, the lost answer and p1 are gone.
  let pos = conn.answer(p2b, "s10", []);
  unknownPos(() => resolvePosition(conn.head, p2));
  unknownPos(() => resolvePosition(conn.head, p1));
  // Much later, the losing sibling's records still read as what they replaced.
  for (let i = 1; i < 5; i++) pos = conn.answer(pos, `s${10 + i}`, ["!c"]);
  assertEquals(conn.held(pos, "!b"), null);
  assertEquals(conn.held(pos, "!a")?.sentAt, "s1");
  assertEquals(conn.held(pos, "!c")?.sentAt, "s14");
});

Deno.test("a child confirmed without retries keeps no fork; unknown positions are refused", () => {
  const conn = new Connection();
  const p1 = conn.answer(undefined, "s1", ["!a"]);
  const p2 = conn.answer(p1, "s2", ["!a"]);
  conn.answer(p2, "s3", []);
  assertEquals(conn.head!.forks, {});
  unknownPos(() => resolvePosition(conn.head, "zz"));
  unknownPos(() => resolvePosition(undefined, p2));
  unknownPos(() => resolvePosition(conn.head, p2.replace(/^[0-9a-f]+/, "abc")));
  // A new connection (no pos) starts over: another generation, nothing held.
  const fresh = conn.answer(undefined, "s9", []);
  assertEquals(conn.held(fresh, "!a"), null);
  unknownPos(() => resolvePosition(conn.head, p2));
});

Deno.test("retries past MAX_ISSUED expire the oldest answers", () => {
  const conn = new Connection();
  const p1 = conn.answer(undefined, "s1", []);
  const answers: string[] = [];
  for (let i = 0; i < MAX_ISSUED + 2; i++) answers.push(conn.answer(p1, `s${i + 2}`, ["!a"]));
  unknownPos(() => resolvePosition(conn.head, answers[0]));
  const last = answers[answers.length - 1];
  assertEquals(conn.held(last, "!a")?.sentAt, `s${answers.length + 1}`);
  const next = conn.answer(last, "s99", []);
  assert(conn.head!.forks[String(2)] !== undefined, "the fork is remembered");
  assertEquals(conn.held(next, "!a")?.sentAt, `s${answers.length + 1}`);
});

Deno.test("a position's depth grows by one per answer", () => {
  const base: PositionState = {
    depth: 3,
    attempt: "a",
    token: "s",
    subscriptions: {},
    listCounts: {},
  };
  assertEquals(childOf(base, { token: "t", subscriptions: {}, listCounts: {} }).depth, 4);
});

Deno.test("two answers to one pos each keep what they sent, whichever saved last", () => {
  for (const order of ["first", "second"] as const) {
    const conn = new Connection();
    const start = conn.answer(undefined, "s1", []);
    const one = conn.answer(start, "s2", ["!a"]);
    const two = conn.answer(start, "s2", ["!a"]);
    // The client goes on from either; the other answer's later save must not hide its own.
    const kept = order === "first" ? one : two;
    assertEquals(conn.held(kept, "!a")?.sentAt, "s2", `going on from the ${order} answer`);
  }
});
