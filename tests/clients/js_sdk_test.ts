/**
 * matrix-js-sdk (the SDK behind Element) against the real server process: registration and
 * login, a room with an invite and a join, 50 messages delivered in order by the SDK's own sync
 * loop, typing, receipts and display names, back-pagination through the whole history, and a
 * refused power-level change.
 */
import * as sdk from "matrix-js-sdk";
import { assert, assertEquals } from "../assert.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import { recordingFetch, startSyncing, step, waitUntil } from "./matrix_helpers.ts";

/** The SDK logs every sync at debug level; keep warnings and errors only, so output stays readable. */
const quietLogger = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (...msg: unknown[]) => console.warn("[js-sdk]", ...msg),
  error: (...msg: unknown[]) => console.error("[js-sdk]", ...msg),
  getChild: () => quietLogger,
};

const PASSWORD = "correct horse battery staple";

interface Session {
  client: sdk.MatrixClient;
  userId: string;
}

/** One server and the clients made on it; `close()` stops them all, then the server. */
class Harness {
  readonly failures: string[] = [];
  readonly clients: sdk.MatrixClient[] = [];
  private constructor(readonly server: ServerProcess) {}

  static async start(): Promise<Harness> {
    return new Harness(await startServerProcess());
  }

  /** A client of the server that records failed requests. */
  client(opts: Partial<sdk.ICreateClientOpts> = {}): sdk.MatrixClient {
    const client = sdk.createClient({
      baseUrl: this.server.baseUrl,
      store: new sdk.MemoryStore(),
      fetchFn: recordingFetch(this.failures),
      logger: quietLogger,
      ...opts,
    });
    this.clients.push(client);
    return client;
  }

  /** Register `name` the way Element does: ask for the flows, then complete m.login.dummy. */
  async register(name: string): Promise<Session> {
    const anonymous = this.client();
    const data: sdk.RegisterRequest = {
      username: name,
      password: PASSWORD,
      initial_device_display_name: `${name}'s js-sdk`,
    };
    let session: string | undefined;
    try {
      const res = await anonymous.registerRequest(data);
      return this.signedIn(res.user_id, res.access_token!, res.device_id!);
    } catch (error) {
      const e = error as sdk.MatrixError;
      if (e.httpStatus !== 401) throw error;
      const flows = (e.data as { flows?: { stages: string[] }[] }).flows ?? [];
      assert(
        flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
        `register offers no m.login.dummy flow: ${JSON.stringify(e.data)}`,
      );
      session = (e.data as { session?: string }).session;
    }
    const res = await anonymous.registerRequest({
      ...data,
      auth: { type: "m.login.dummy", session },
    });
    assertEquals(res.user_id, `@${name}:${this.server.serverName}`);
    assert(res.access_token, "register returned no access_token");
    return this.signedIn(res.user_id, res.access_token, res.device_id!);
  }

  /** Log in with a password, as a new device. */
  async login(name: string): Promise<Session> {
    const res = await this.client().loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: name },
      password: PASSWORD,
      initial_device_display_name: `${name}'s second js-sdk`,
    });
    assertEquals(res.user_id, `@${name}:${this.server.serverName}`);
    return this.signedIn(res.user_id, res.access_token, res.device_id);
  }

  private signedIn(userId: string, accessToken: string, deviceId: string): Session {
    return { userId, client: this.client({ userId, accessToken, deviceId }) };
  }

  /** Start a client's sync loop and wait until its first sync is processed. */
  async sync(session: Session, initialSyncLimit = 20): Promise<void> {
    await startSyncing(session.client, session.userId, initialSyncLimit);
  }

  async close(failed: boolean): Promise<void> {
    for (const client of this.clients) client.stopClient();
    if (failed) {
      console.error("requests answered with an error status:\n  " + this.failures.join("\n  "));
      console.error("server output:\n" + this.server.output());
    }
    await this.server.stop();
  }
}

/** Run `body` on a fresh server, stopping clients and server afterwards. */
async function withHarness(body: (h: Harness) => Promise<void>): Promise<void> {
  const h = await Harness.start();
  let failed = true;
  try {
    await body(h);
    failed = false;
  } finally {
    await h.close(failed);
  }
}

/** The bodies of the m.room.message events in a room's live timeline, oldest first. */
function liveMessages(client: sdk.MatrixClient, roomId: string): sdk.MatrixEvent[] {
  const room = client.getRoom(roomId);
  if (!room) return [];
  return room.getLiveTimeline().getEvents().filter((e) =>
    e.getType() === sdk.EventType.RoomMessage
  );
}

/** Alice creates a private room and invites Bob, who sees the invite through sync and joins. */
async function roomWithInvite(
  h: Harness,
): Promise<{ alice: Session; bob: Session; roomId: string }> {
  const alice = await step("register alice", () => h.register("alice"));
  await step("register bob", () => h.register("bob"));
  const bob = await step("log in bob", () => h.login("bob"));
  await step("alice's first sync", () => h.sync(alice));
  await step("bob's first sync", () => h.sync(bob));

  const { room_id: roomId } = await step(
    "createRoom",
    () => alice.client.createRoom({ preset: sdk.Preset.PrivateChat, name: "Test room" }),
  );
  await step("invite", () => alice.client.invite(roomId, bob.userId));
  await waitUntil(
    "bob to see the invite through sync",
    () => bob.client.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
  );
  await step("join", () => bob.client.joinRoom(roomId));
  await waitUntil(
    "alice to see bob join",
    () =>
      alice.client.getRoom(roomId)?.getMember(bob.userId)?.membership ===
        sdk.KnownMembership.Join,
  );
  assertEquals(bob.client.getRoom(roomId)?.name, "Test room");
  return { alice, bob, roomId };
}

Deno.test({
  name: "js-sdk: register, invite and join, 50 messages in order on both sides, then scrollback",
  fn: () =>
    withHarness(async (h) => {
      const { alice, bob, roomId } = await roomWithInvite(h);

      const sent: { id: string; body: string }[] = [];
      for (let i = 0; i < 50; i++) {
        const from = i % 2 === 0 ? alice : bob;
        const body = `message ${i} from ${from.userId}`;
        const { event_id } = await step(`send message ${i}`, () =>
          from.client.sendTextMessage(roomId, body));
        sent.push({ id: event_id, body });
      }
      for (const side of [alice, bob]) {
        const seen = await waitUntil(`${side.userId} to receive all 50 messages`, () => {
          const events = liveMessages(side.client, roomId);
          // Status null means the server's copy arrived through sync (not just a local echo).
          const synced = events.filter((e) =>
            e.status === null && !e.getId()?.startsWith("~")
          );
          return synced.length >= 50 ? synced : null;
        });
        assertEquals(
          seen.map((e) => ({ id: e.getId(), body: e.getContent().body })),
          sent,
          `${side.userId}'s timeline differs from what was sent`,
        );
      }

      // A fresh client for Bob with a short initial sync pages back through the whole history.
      const fresh: Session = {
        userId: bob.userId,
        client: h.client({
          userId: bob.userId,
          accessToken: bob.client.getAccessToken()!,
          deviceId: bob.client.getDeviceId()!,
        }),
      };
      await step("fresh client's first sync", () => h.sync(fresh, 5));
      const room = await waitUntil("the fresh client to know the room", () =>
        fresh.client.getRoom(roomId));
      for (let i = 0; i < 100 && room.oldState.paginationToken !== null; i++) {
        await step("scrollback", () =>
          fresh.client.scrollback(room, 10));
      }
      const timeline = room.getLiveTimeline().getEvents();
      assertEquals(timeline[0]?.getType(), sdk.EventType.RoomCreate, "history starts at creation");
      assertEquals(
        liveMessages(fresh.client, roomId).map((e) => ({
          id: e.getId(),
          body: e.getContent().body,
        })),
        sent,
      );
      const ids = timeline.map((e) => e.getId());
      assertEquals(new Set(ids).size, ids.length, "scrollback repeated an event");
    }),
});

Deno.test({
  name: "js-sdk: typing, a read receipt and a display-name change reach the other side",
  fn: () =>
    withHarness(async (h) => {
      const { alice, bob, roomId } = await roomWithInvite(h);

      await step("alice typing", () => alice.client.sendTyping(roomId, true, 20_000));
      await waitUntil("bob to see alice typing", () =>
        bob.client.getRoom(roomId)?.getMember(alice.userId)?.typing === true);
      await step("alice stops typing", () =>
        alice.client.sendTyping(roomId, false, 0));
      await waitUntil("bob to see alice stop typing", () =>
        bob.client.getRoom(roomId)?.getMember(alice.userId)?.typing === false);

      const { event_id } = await step("send", () =>
        alice.client.sendTextMessage(roomId, "read me"));
      const event = await waitUntil("bob to receive the message", () =>
        bob.client.getRoom(roomId)?.findEventById(event_id));
      await step("bob's read receipt", () =>
        bob.client.sendReadReceipt(event));
      await waitUntil(
        "alice to see bob's read receipt",
        () =>
          alice.client.getRoom(roomId)?.getEventReadUpTo(bob.userId) === event_id,
      );

      await step("bob's display name", () =>
        bob.client.setDisplayName("Bob Builder"));
      await waitUntil("alice to see bob's new name", () =>
        alice.client.getRoom(roomId)?.getMember(bob.userId)?.rawDisplayName === "Bob Builder");
      const profile = await step("get profile", () =>
        alice.client.getProfileInfo(bob.userId));
      assertEquals(profile.displayname, "Bob Builder");
    }),
});

Deno.test({
  name: "js-sdk: a member at power level 0 cannot change power levels (M_FORBIDDEN)",
  fn: () =>
    withHarness(async (h) => {
      const { alice, bob, roomId } = await roomWithInvite(h);
      const levels = bob.client.getRoom(roomId)?.currentState.getStateEvents(
        sdk.EventType.RoomPowerLevels,
        "",
      );
      assert(levels, "bob has no power levels event in his room state");
      assertEquals(levels.getContent().users?.[bob.userId] ?? 0, 0);
      let refused: sdk.MatrixError | undefined;
      try {
        await bob.client.setPowerLevel(roomId, bob.userId, 100);
      } catch (error) {
        refused = error as sdk.MatrixError;
      }
      assert(refused, "the power-level change was accepted");
      assertEquals(refused.httpStatus, 403);
      assertEquals(refused.errcode, "M_FORBIDDEN");
      // Alice, the creator at 100, may still change them: the refusal was about Bob's level.
      await step("alice raises bob", () => alice.client.setPowerLevel(roomId, bob.userId, 50));
      await waitUntil("bob to see his new level", () =>
        bob.client.getRoom(roomId)?.getMember(bob.userId)?.powerLevel === 50);
    }),
});

Deno.test({
  name: "js-sdk: a DM accepted after a message shows the message and knows its inviter",
  fn: () =>
    withHarness(async (h) => {
      const alice = await step("register alice", () => h.register("alice"));
      const bob = await step("register bob", () => h.register("bob"));
      await step("alice's first sync", () => h.sync(alice));
      await step("bob's first sync", () => h.sync(bob));
      const { room_id: roomId } = await step("create the DM", () =>
        alice.client.createRoom({
          preset: sdk.Preset.TrustedPrivateChat,
          is_direct: true,
          invite: [bob.userId],
        }));
      await waitUntil(
        "bob to see the invite through sync",
        () => bob.client.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
      );
      // Sent while Bob is only invited: Element found it missing after he accepted.
      const { event_id: early } = await step("alice writes first", () =>
        alice.client.sendTextMessage(roomId, "hello before you joined"));
      await step("bob accepts", () =>
        bob.client.joinRoom(roomId));
      await waitUntil("bob's timeline to hold alice's first message", () =>
        liveMessages(bob.client, roomId).some((e) =>
          e.getId() === early
        ));
      // matrix-js-sdk finds who invited Bob from the join's unsigned.prev_sender; Element files
      // the room under People (and writes m.direct) only when it does.
      await waitUntil("bob's client to know the DM's inviter", () =>
        bob.client.getRoom(roomId)?.getDMInviter() === alice.userId);
    }),
});
