/**
 * Write access by power level (issue 8, finding 3): who may redact what, at send time over real
 * HTTP in every room version we serve, and when a stored redaction is applied. Room creation,
 * membership PUTs and alias rules (findings 4, 14, 15, 16) are in room_setup_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { checkRedactionApplies } from "../../domain/protocol/redaction_auth_rules.ts";
import { buildEvent } from "../../domain/protocol/event_builder.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import {
  ALICE,
  assertAllowed,
  assertRejected,
  BOB,
  DAVE,
  standardRoom,
} from "../domain/auth_room_fixture.ts";

const V3 = "/_matrix/client/v3";
/** Room versions with different redaction rules: v1-2 (auth rules), v3+ ("handling
 * redactions"), v11 (`redacts` in content), v12 (privileged creators). */
const VERSIONS = ["1", "2", "6", "10", "11", "12"];

type Server = Awaited<ReturnType<typeof startTestServer>>;

function roomPath(roomId: string): string {
  return `${V3}/rooms/${encodeURIComponent(roomId)}`;
}

let txn = 0;

async function redact(server: Server, user: RegisteredUser, roomId: string, eventId: string) {
  return await server.request(
    "PUT",
    `${roomPath(roomId)}/redact/${encodeURIComponent(eventId)}/r${++txn}`,
    { token: user.accessToken, body: {} },
  );
}

async function putState(
  server: Server,
  user: RegisteredUser,
  roomId: string,
  type: string,
  content: unknown,
  stateKey = "",
): Promise<string> {
  const res = await server.request(
    "PUT",
    `${roomPath(roomId)}/state/${type}/${encodeURIComponent(stateKey)}`,
    { token: user.accessToken, body: content },
  );
  assertEquals(res.status, 200, `${type}: ${JSON.stringify(res.body)}`);
  return res.body.event_id;
}

async function sendMessage(server: Server, user: RegisteredUser, roomId: string, body: string) {
  const res = await server.request("PUT", `${roomPath(roomId)}/send/m.room.message/m${++txn}`, {
    token: user.accessToken,
    body: { msgtype: "m.text", body },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function createRoom(server: Server, user: RegisteredUser, version: string) {
  const res = await server.request("POST", `${V3}/createRoom`, {
    token: user.accessToken,
    body: { preset: "public_chat", room_version: version },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

/** The room's whole log (every status), to show a refused request wrote nothing. */
async function logLength(server: Server, roomId: string): Promise<number> {
  const head = await server.deps.eventStore.roomHead(roomId);
  return head!.lastPosition - head!.firstPosition;
}

async function content(server: Server, user: RegisteredUser, roomId: string, eventId: string) {
  const res = await server.request(
    "GET",
    `${roomPath(roomId)}/event/${encodeURIComponent(eventId)}`,
    { token: user.accessToken },
  );
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.content;
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const carol = await registerUser(server, "carol");
  return { server, alice, bob, carol };
}

Deno.test("finding 3: a member at power level 0 cannot redact others' events, in every version", async () => {
  const { server, alice, bob } = await setup();
  try {
    for (const version of VERSIONS) {
      const roomId = await createRoom(server, alice, version);
      const join = await server.request("POST", `${roomPath(roomId)}/join`, {
        token: bob.accessToken,
        body: {},
      });
      assertEquals(join.status, 200);
      const targets = {
        name: await putState(server, alice, roomId, "m.room.name", { name: "Ops" }),
        topic: await putState(server, alice, roomId, "m.room.topic", { topic: "plans" }),
        encryption: await putState(server, alice, roomId, "m.room.encryption", {
          algorithm: "m.megolm.v1.aes-sha2",
        }),
        member: (await server.deps.eventStore.currentStateEventId(
          roomId,
          "m.room.member",
          alice.userId,
        ))!,
        message: await sendMessage(server, alice, roomId, "hello"),
      };
      const before = await logLength(server, roomId);
      for (const [what, eventId] of Object.entries(targets)) {
        const res = await redact(server, bob, roomId, eventId);
        assertEquals(
          [res.status, res.body.errcode],
          [403, "M_FORBIDDEN"],
          `v${version} ${what}: ${JSON.stringify(res.body)}`,
        );
      }
      assertEquals(await logLength(server, roomId), before, `v${version}: nothing written`);
      assertEquals(await content(server, alice, roomId, targets.name), { name: "Ops" });
      assertEquals((await content(server, bob, roomId, targets.message)).body, "hello");

      // Own events: allowed at level 0. Others' events: allowed at the redact level.
      const bobMessage = await sendMessage(server, bob, roomId, "oops");
      assertEquals((await redact(server, bob, roomId, bobMessage)).status, 200);
      assertEquals(await content(server, alice, roomId, bobMessage), {});
      const bobSecond = await sendMessage(server, bob, roomId, "spam");
      assertEquals((await redact(server, alice, roomId, bobSecond)).status, 200, `v${version}`);
      assertEquals(await content(server, bob, roomId, bobSecond), {});
    }
  } finally {
    server.close();
  }
});

Deno.test("finding 3: the check runs on the built event, so v11's content.redacts is covered", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await createRoom(server, alice, "11");
    await server.request("POST", `${roomPath(roomId)}/join`, { token: bob.accessToken, body: {} });
    const name = await putState(server, alice, roomId, "m.room.name", { name: "Ops" });
    const before = await logLength(server, roomId);
    const res = await server.request("PUT", `${roomPath(roomId)}/send/m.room.redaction/x1`, {
      token: bob.accessToken,
      body: { redacts: name },
    });
    assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals(await logLength(server, roomId), before);
    assertEquals(await content(server, alice, roomId, name), { name: "Ops" });
  } finally {
    server.close();
  }
});

Deno.test("finding 3: redacting an event of another room is 400, a non-member 403, unknown 404", async () => {
  const { server, alice, bob, carol } = await setup();
  try {
    for (const version of ["1", "10", "11"]) {
      const roomA = await createRoom(server, alice, version);
      const roomB = await createRoom(server, alice, version);
      await server.request("POST", `${roomPath(roomA)}/join`, {
        token: bob.accessToken,
        body: {},
      });
      await server.request("POST", `${roomPath(roomB)}/join`, {
        token: bob.accessToken,
        body: {},
      });
      const inB = await sendMessage(server, bob, roomB, "in B");
      const inA = await sendMessage(server, bob, roomA, "in A");
      const before = await logLength(server, roomA);

      // Alice is an admin of both rooms, Bob the sender of the target: still the wrong room.
      for (const user of [alice, bob]) {
        const res = await redact(server, user, roomA, inB);
        assertEquals(res.status, 400, `v${version}: ${JSON.stringify(res.body)}`);
        assertEquals(res.body.errcode, "M_INVALID_PARAM");
      }
      // Carol never joined A.
      const outsider = await redact(server, carol, roomA, inA);
      assertEquals([outsider.status, outsider.body.errcode], [403, "M_FORBIDDEN"]);
      // An event nobody has: only the redact level may name it (as Synapse: it may arrive later).
      const unknown = version === "1" ? "$unknown1:example.org:8448" : `$${"A".repeat(43)}`;
      const missing = await redact(server, bob, roomA, unknown);
      assertEquals([missing.status, missing.body.errcode], [404, "M_NOT_FOUND"]);
      assertEquals(await logLength(server, roomA), before);
      assertEquals((await content(server, bob, roomB, inB)).body, "in B");
      assertEquals((await redact(server, alice, roomA, unknown)).status, 200);
      // Not even an admin redacts the create event (as Synapse: nothing good comes of it).
      const create = await server.deps.eventStore.currentStateEventId(roomA, "m.room.create", "");
      const createRedaction = await redact(server, alice, roomA, create!);
      assertEquals([createRedaction.status, createRedaction.body.errcode], [403, "M_FORBIDDEN"]);
    }
  } finally {
    server.close();
  }
});

Deno.test("finding 3: power changes between sends are honoured (demoted moderator, promoted member)", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await createRoom(server, alice, "10");
    await server.request("POST", `${roomPath(roomId)}/join`, { token: bob.accessToken, body: {} });
    const first = await sendMessage(server, alice, roomId, "one");
    const second = await sendMessage(server, alice, roomId, "two");
    const levels = await server.request("GET", `${roomPath(roomId)}/state/m.room.power_levels`, {
      token: alice.accessToken,
    });
    const promoted = { ...levels.body, users: { ...levels.body.users, [bob.userId]: 50 } };
    await putState(server, alice, roomId, "m.room.power_levels", promoted);
    assertEquals((await redact(server, bob, roomId, first)).status, 200);
    await putState(server, alice, roomId, "m.room.power_levels", levels.body);
    assertEquals((await redact(server, bob, roomId, second)).status, 403);
    // The redaction Bob sent while a moderator still applies; the refused one wrote nothing.
    assertEquals(await content(server, alice, roomId, first), {});
    assertEquals((await content(server, alice, roomId, second)).body, "two");
  } finally {
    server.close();
  }
});

Deno.test("finding 3: a redaction stored before the send-time check existed is not applied", async () => {
  const { server, alice, bob } = await setup();
  try {
    for (const version of ["1", "10", "11"]) {
      const roomId = await createRoom(server, alice, version);
      await server.request("POST", `${roomPath(roomId)}/join`, {
        token: bob.accessToken,
        body: {},
      });
      const name = await putState(server, alice, roomId, "m.room.name", { name: "Ops" });
      // What the old server wrote for Bob (level 0): built and signed by our server, appended
      // without the sender's check, as the store of a server upgraded from it holds.
      const store = server.deps.eventStore;
      const head = (await store.roomHead(roomId))!;
      const tips = await store.getEvents(head.forwardExtremities);
      const state = await store.currentState(roomId);
      const built = await buildEvent({
        version: roomVersion(version)!,
        roomId,
        sender: bob.userId,
        type: "m.room.redaction",
        content: {},
        redacts: name,
        prevEvents: [...tips.values()].map((e) => ({ eventId: e.eventId, depth: e.pdu.depth })),
        currentState: (key) => {
          const id = state.get(key);
          return id === undefined ? undefined : { eventId: id };
        },
        serverName: server.config.serverName,
        signingKey: server.deps.keyring.current,
      });
      await store.append({
        roomId,
        events: [{ eventId: built.eventId, pdu: built.pdu, status: "accepted" }],
      });
      assertEquals(await content(server, alice, roomId, name), { name: "Ops" }, `v${version}`);
      const messages = await server.request(
        "GET",
        `${roomPath(roomId)}/messages?dir=b&limit=20`,
        { token: alice.accessToken },
      );
      const shown = messages.body.chunk.find((e: { event_id: string }) => e.event_id === name);
      assertEquals(shown.content, { name: "Ops" }, `v${version} /messages`);
    }
  } finally {
    server.close();
  }
});

Deno.test("finding 3: a stored redaction applies for its sender's own event or the redact level", () => {
  const local = "a.test";
  for (const v of ["1", "2", "6", "10", "11", "12"]) {
    const room = standardRoom(v, { members: [BOB, DAVE] });
    const aliceMessage = room.send(room.event({ type: "m.room.message", sender: ALICE }));
    const daveMessage = room.send(room.event({ type: "m.room.message", sender: DAVE }));
    const bobMessage = room.send(room.event({ type: "m.room.message", sender: BOB }));
    const by = (sender: string, target: { event_id: string }) =>
      room.event({ type: "m.room.redaction", sender, redacts: target.event_id });
    const applies = (sender: string, target: typeof aliceMessage) =>
      checkRedactionApplies(by(sender, target), target, room.lookup, room.version, {
        localServer: local,
      });
    // DAVE (level 0) shares our server with ALICE: same server is no longer enough for our own
    // users (older stores may hold such redactions from before the send-time check).
    assertRejected(
      applies(DAVE, aliceMessage),
      "sender's power level 0 is below the redact level 50 and did not send the redacted event",
    );
    assertAllowed(applies(DAVE, daveMessage), `v${v} own event`);
    assertAllowed(applies(ALICE, bobMessage), `v${v} redact level`);
    // A remote server may still redact its own users' events (the spec's same-server rule,
    // which v1-2 decide in the auth rules by event ID domain).
    const remote = checkRedactionApplies(
      by(BOB, bobMessage),
      bobMessage,
      room.lookup,
      room.version,
      {
        localServer: local,
      },
    );
    assertAllowed(remote, `v${v} remote own`);
    if (!room.version.specialCaseRedactionAuth) {
      // ...but from v3 only for its own users' events.
      const remoteOnOurs = checkRedactionApplies(
        by(BOB, aliceMessage),
        aliceMessage,
        room.lookup,
        room.version,
        { localServer: local },
      );
      assert(!remoteOnOurs.allowed, `v${v} remote sender on a local event`);
    }
  }
});
