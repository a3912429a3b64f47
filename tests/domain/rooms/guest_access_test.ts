import { assert, assertEquals } from "../../assert.ts";
import { ALICE, BOB, CAROL, createPublicRoom, openRoomFixture, SERVER } from "../room_fixture.ts";
import { MatrixError } from "../../../domain/errors.ts";
import { LocalEventSender } from "../../../domain/local_event_sender.ts";
import { GuestEvictor, guestJoinCondition } from "../../../domain/rooms/guest_access.ts";

type Fixture = Awaited<ReturnType<typeof openRoomFixture>>;

const guestJoin = (roomId: string, user: string) => ({
  roomId,
  sender: user,
  type: "m.room.member",
  stateKey: user,
  content: { membership: "join", kind: "guest" },
  condition: guestJoinCondition,
});

const guestAccess = (roomId: string, value: string) => ({
  roomId,
  sender: ALICE,
  type: "m.room.guest_access",
  stateKey: "",
  content: { guest_access: value },
});

async function refusal(promise: Promise<unknown>): Promise<MatrixError> {
  const error = await promise.then(() => undefined, (e) => e);
  assert(error instanceof MatrixError, "refused");
  return error;
}

async function withRoom(test: (f: Fixture, roomId: string) => Promise<void>) {
  const fixture = await openRoomFixture();
  try {
    await test(fixture, await createPublicRoom(fixture.sender, "10"));
  } finally {
    fixture.close();
  }
}

Deno.test("a guest's join needs guest_access can_join in the state it is authorised on", () =>
  withRoom(async ({ sender, store }, roomId) => {
    const closed = await refusal(sender.send(guestJoin(roomId, BOB)));
    assertEquals([closed.status, closed.errcode], [403, "M_FORBIDDEN"]);
    assertEquals(await store.currentStateEventId(roomId, "m.room.member", BOB), null);
    await sender.send(guestAccess(roomId, "can_join"));
    await sender.send(guestJoin(roomId, BOB));
    assertEquals((await store.members(roomId, ["join"])).map((m) => m.userId).sort(), [ALICE, BOB]);
  }));

Deno.test("a revocation queued before a guest's join in the same batch refuses the join", () =>
  withRoom(async ({ sender }, roomId) => {
    await sender.send(guestAccess(roomId, "can_join"));
    const [revoked, joined] = await Promise.allSettled([
      sender.send(guestAccess(roomId, "forbidden")),
      sender.send(guestJoin(roomId, BOB)),
    ]);
    assertEquals(revoked.status, "fulfilled");
    assertEquals(joined.status, "rejected");
  }));

Deno.test("a revocation committed by another process binds a sender's cached view", () =>
  withRoom(async ({ sender, store, signingKey }, roomId) => {
    await sender.send(guestAccess(roomId, "can_join"));
    const other = new LocalEventSender({ store, serverName: SERVER, signingKey });
    await other.send(guestAccess(roomId, "forbidden"));
    await refusal(sender.send(guestJoin(roomId, BOB)));
  }));

Deno.test("the evictor makes joined guests leave and nobody else", () =>
  withRoom(async ({ sender, store }, roomId) => {
    await sender.send(guestAccess(roomId, "can_join"));
    await sender.send(guestJoin(roomId, BOB));
    await sender.send({
      roomId,
      sender: CAROL,
      type: "m.room.member",
      stateKey: CAROL,
      content: { membership: "join" },
    });
    const left: string[] = [];
    const evictor = new GuestEvictor({
      store,
      serverName: SERVER,
      leave: async (userId, room) => {
        left.push(userId);
        await sender.send({
          roomId: room,
          sender: userId,
          type: "m.room.member",
          stateKey: userId,
          content: { membership: "leave" },
        });
      },
    });
    // Only a guest_access event that closes the room has follow-up work.
    const pdu = (value: string) => ({
      type: "m.room.guest_access",
      state_key: "",
      content: { guest_access: value },
    });
    assertEquals(await evictor.prepare({ roomId, pdu: pdu("can_join") }), undefined);
    const prepared = await evictor.prepare({ roomId, pdu: pdu("forbidden") });
    assert(prepared?.afterCommit);
    await prepared.afterCommit();
    await evictor.idle();
    assertEquals(left, [BOB]);
    assertEquals((await store.members(roomId, ["join"])).map((m) => m.userId).sort(), [
      ALICE,
      CAROL,
    ]);
  }));
