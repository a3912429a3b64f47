// deno-lint-ignore-file no-explicit-any
/**
 * Erasure (deactivation with `erase: true`): the erased user's events reach members who were
 * joined when they were sent intact, and everyone else redacted, through every reader.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

Deno.test("erasure: only members joined at the time see an erased user's messages; later joiners get them redacted", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const creator = await registerUser(server, "creator", "pw-creator");
    const member = await registerUser(server, "member");
    const joiner = await registerUser(server, "joiner");
    const keeper = await registerUser(server, "keeper");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: creator.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = created.body.room_id as string;
    const room = encodeURIComponent(roomId);
    const join = async (token: string) =>
      assertEquals(
        (await server.request("POST", `${V3}/rooms/${room}/join`, { token, body: {} })).status,
        200,
      );
    await join(member.accessToken);
    await join(keeper.accessToken);
    const send = async (token: string, body: string, txn: string) =>
      (await server.request("PUT", `${V3}/rooms/${room}/send/m.room.message/${txn}`, {
        token,
        body: { msgtype: "m.text", body },
      })).body.event_id as string;
    const messageId = await send(creator.accessToken, "body1", "t1");
    const keptId = await send(keeper.accessToken, "from a user who stays", "t2");
    await join(joiner.accessToken);

    const timelineEvent = async (token: string, eventId: string) => {
      const sync = await server.request("GET", `${V3}/sync`, { token });
      const events = sync.body.rooms.join[roomId].timeline.events as any[];
      return events.find((e) => e.event_id === eventId);
    };
    assertEquals((await timelineEvent(joiner.accessToken, messageId)).content.body, "body1");

    // Deactivate with erase, through the user-interactive auth the endpoint asks for.
    const challenge = await server.request("POST", `${V3}/account/deactivate`, {
      token: creator.accessToken,
      body: { erase: true },
    });
    assertEquals(challenge.status, 401);
    const done = await server.request("POST", `${V3}/account/deactivate`, {
      token: creator.accessToken,
      body: {
        erase: true,
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "creator" },
          password: "pw-creator",
          session: challenge.body.session,
        },
      },
    });
    assertEquals(done.status, 200);

    // The member was joined when it was sent: intact.
    const forMember = await timelineEvent(member.accessToken, messageId);
    assertEquals([forMember.type, forMember.content.body], ["m.room.message", "body1"]);
    // The joiner was not: redacted, in /sync, /messages, /context and /event alike.
    const forJoiner = await timelineEvent(joiner.accessToken, messageId);
    assertEquals([forJoiner.type, forJoiner.content], ["m.room.message", {}]);
    assertEquals(
      (await timelineEvent(joiner.accessToken, keptId)).content.body,
      "from a user who stays",
    );
    const messages = await server.request("GET", `${V3}/rooms/${room}/messages?dir=b&limit=50`, {
      token: joiner.accessToken,
    });
    const paged = (messages.body.chunk as any[]).find((e) => e.event_id === messageId);
    assertEquals(paged.content, {});
    const event = await server.request(
      "GET",
      `${V3}/rooms/${room}/event/${encodeURIComponent(messageId)}`,
      { token: joiner.accessToken },
    );
    assertEquals([event.status, event.body.content], [200, {}]);
    const context = await server.request(
      "GET",
      `${V3}/rooms/${room}/context/${encodeURIComponent(keptId)}?limit=5`,
      { token: joiner.accessToken },
    );
    const before = (context.body.events_before as any[]).find((e) => e.event_id === messageId);
    assertEquals(before.content, {});
    const forMemberEvent = await server.request(
      "GET",
      `${V3}/rooms/${room}/event/${encodeURIComponent(messageId)}`,
      { token: member.accessToken },
    );
    assertEquals(forMemberEvent.body.content.body, "body1");
  } finally {
    server.close();
  }
});

Deno.test("erasure: deactivating without erase leaves the user's messages readable to later joiners", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const creator = await registerUser(server, "creator", "pw-creator");
    const joiner = await registerUser(server, "joiner");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: creator.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = created.body.room_id as string;
    const room = encodeURIComponent(roomId);
    const sent = await server.request("PUT", `${V3}/rooms/${room}/send/m.room.message/t1`, {
      token: creator.accessToken,
      body: { msgtype: "m.text", body: "still here" },
    });
    const challenge = await server.request("POST", `${V3}/account/deactivate`, {
      token: creator.accessToken,
      body: {},
    });
    const done = await server.request("POST", `${V3}/account/deactivate`, {
      token: creator.accessToken,
      body: {
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "creator" },
          password: "pw-creator",
          session: challenge.body.session,
        },
      },
    });
    assertEquals(done.status, 200);
    // The room is public: joinable after its creator left.
    const joined = await server.request("POST", `${V3}/rooms/${room}/join`, {
      token: joiner.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const event = await server.request(
      "GET",
      `${V3}/rooms/${room}/event/${encodeURIComponent(sent.body.event_id)}`,
      { token: joiner.accessToken },
    );
    assert(event.status === 200, JSON.stringify(event.body));
    assertEquals(event.body.content.body, "still here");
  } finally {
    server.close();
  }
});
