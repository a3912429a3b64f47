/**
 * matrix-js-sdk's simplified sliding sync (MSC4186) against the real server process (issue 13):
 *
 * 1. js-sdk's `SlidingSync` class alone: a list over an account's 300 rooms (count, the newest
 *    20 by bump_stamp), a range change (only the newly covered rooms are sent), a sticky room
 *    subscription sent once, and new messages arriving incrementally through the long-poll (only
 *    the new events; a room bumped into a range arrives whole).
 * 2. Encrypted rooms: two js-sdk clients with Rust crypto, one on sync v2 and one on sliding sync
 *    through js-sdk's `SlidingSyncSdk` (`startClient({ slidingSync })`, with its `e2ee` and
 *    `to_device` extensions), exchange encrypted messages and decrypt them.
 */
import * as sdk from "matrix-js-sdk";
import {
  type MSC3575List,
  type MSC3575RoomData,
  type MSC3575RoomSubscription,
  type MSC3575SlidingSyncResponse,
  SlidingSync,
  SlidingSyncEvent,
  SlidingSyncState,
} from "matrix-js-sdk/lib/sliding-sync.js";
import { assert, assertEquals } from "../assert.ts";
import { jsonRequest } from "../json_request.ts";
import {
  createPublicRoom,
  type HarnessServer,
  type RegisteredUser,
  registerUser,
  sendText,
} from "../routes/client_harness.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import {
  recordingFetch,
  registerUser as registerWithPassword,
  waitUntil,
} from "./matrix_helpers.ts";
import {
  createEncryptedRoom,
  cryptoFailureReport,
  type CryptoSession,
  decryptedMessages,
  joinEncryptedRoom,
  loginCryptoClient,
  openUploadedCryptoClient,
  quietGlobalSdkLogger,
  quietLogger,
  waitForMember,
  waitForOwnDeviceKeysUploaded,
} from "./crypto_client.ts";
import { assertDecrypts, assertEncryptedOnServer, sendEncrypted } from "./e2ee_assertions.ts";

const ROOMS = 300;
const PASSWORD = "correct horse battery staple";
/** The long-poll js-sdk asks for: new messages must wake it, not its timeout. */
const POLL_TIMEOUT_MS = 20_000;

/** Plain HTTP requests to the server process, for set-up the SDK need not do. */
function harnessOf(server: ServerProcess): HarnessServer {
  return {
    request: (method, path, options) =>
      jsonRequest((p, init) => fetch(`${server.baseUrl}${p}`, init), method, path, options),
  };
}

/** Everything a SlidingSync instance reported: each response, and each room's data in order. */
class Recorder {
  readonly responses: MSC3575SlidingSyncResponse[] = [];
  readonly roomData: { response: number; roomId: string; data: MSC3575RoomData }[] = [];
  readonly errors: string[] = [];

  constructor(slidingSync: SlidingSync) {
    slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
      if (err) this.errors.push(String((err as Error).message ?? err));
      // RequestFinished comes before the response's RoomData events, Complete after them.
      if (state === SlidingSyncState.RequestFinished && resp) {
        // A copy: listeners may change room data (SlidingSyncSdk adds a name event).
        this.responses.push(structuredClone(resp));
      }
    });
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
      this.roomData.push({
        response: this.responses.length - 1,
        roomId,
        data: structuredClone(data),
      });
    });
  }

  /** A mark: what arrives after it is what {@link since} returns. */
  mark(): number {
    return this.responses.length;
  }

  /** The room data of the responses after `mark`. */
  since(mark: number): { roomId: string; data: MSC3575RoomData }[] {
    return this.roomData.filter((r) => r.response >= mark);
  }

  /** Wait for the first response after `mark` that carries room data, and return its rooms. */
  async nextRooms(what: string, mark: number): Promise<Map<string, MSC3575RoomData>> {
    const index = await waitUntil(what, () => {
      for (let i = mark; i < this.responses.length; i++) {
        if (Object.keys(this.responses[i].rooms ?? {}).length > 0) return i + 1;
      }
      return 0;
    });
    // RoomData is emitted room by room after RequestFinished: wait for all of that response's.
    await waitUntil(
      `${what}: its rooms processed`,
      () =>
        this.roomData.filter((r) => r.response === index - 1).length ===
          Object.keys(this.responses[index - 1].rooms ?? {}).length,
    );
    return new Map(
      this.roomData.filter((r) => r.response === index - 1).map((r) => [r.roomId, r.data]),
    );
  }
}

/** The event IDs of a room's timeline in a response. */
function timelineIds(data: MSC3575RoomData): string[] {
  return data.timeline.map((e) => e.event_id);
}

Deno.test({
  name:
    "js-sdk SlidingSync: a list over 300 rooms, a range change, a room subscription, new messages incrementally",
  // SlidingSync's loop sleeps and aborted requests outlive stop(); the server is stopped below.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // The SDK's module logger reports each failed request; keep that for the failure report.
    quietGlobalSdkLogger();
    const server = await startServerProcess();
    const http = harnessOf(server);
    const failures: string[] = [];
    const logs: string[] = [];
    let slidingSync: SlidingSync | undefined;
    let client: sdk.MatrixClient | undefined;
    let recorder: Recorder | undefined;
    let failed = true;
    try {
      const alice: RegisteredUser = await registerUser(http, "alice");
      // One at a time, so that creation order is bump order (room i's create event is newer
      // than room i-1's): the list's first 20 are rooms 299..280.
      const rooms: string[] = [];
      for (let i = 0; i < ROOMS; i++) {
        rooms.push(await createPublicRoom(http, alice, { name: roomName(i) }));
      }
      /** The room at list index `index` before any message: newest first. */
      const atIndex = (index: number) => rooms[ROOMS - 1 - index];

      client = sdk.createClient({
        baseUrl: server.baseUrl,
        userId: alice.userId,
        deviceId: alice.deviceId,
        accessToken: alice.accessToken,
        fetchFn: recordingFetch(failures),
        logger: quietLogger("js-sdk", logs),
      });
      // What a client checks in /versions before it uses sliding sync.
      assert(
        await client.doesServerSupportUnstableFeature("org.matrix.simplified_msc3575"),
        "/versions does not advertise org.matrix.simplified_msc3575",
      );
      const list: MSC3575List = {
        ranges: [[0, 19]],
        timeline_limit: 1,
        required_state: [["m.room.name", ""], ["m.room.create", ""]],
      };
      const subscription: MSC3575RoomSubscription = {
        timeline_limit: 5,
        required_state: [["m.room.create", ""], ["m.room.member", "$ME"]],
      };
      slidingSync = new SlidingSync(
        server.baseUrl,
        new Map([["all", list]]),
        subscription,
        client,
        POLL_TIMEOUT_MS,
      );
      recorder = new Recorder(slidingSync);
      const rec = recorder;
      // Runs until stop(); its errors go to the recorder.
      slidingSync.start().catch((error) => rec.errors.push(String(error)));

      // --- The list: count of all 300, the newest 20 sent whole.
      const first = await rec.nextRooms("the first sliding sync response", 0);
      assertEquals(rec.responses[0].lists?.all?.count, ROOMS, "list count");
      assert(typeof rec.responses[0].pos === "string" && rec.responses[0].pos, "no pos");
      const top20 = Array.from({ length: 20 }, (_, i) => atIndex(i));
      assertEquals([...first.keys()].sort(), [...top20].sort(), "the first response's rooms");
      let previousBump = Infinity;
      for (const roomId of top20) {
        const data = first.get(roomId)!;
        const i = rooms.indexOf(roomId);
        assertEquals(data.initial, true, `${roomName(i)} not initial`);
        assertEquals(data.name, roomName(i));
        assertEquals(data.timeline.length, 1, `${roomName(i)}: timeline_limit 1`);
        const types = data.required_state.map((e) => `${e.type}|${e.state_key}`).sort();
        assertEquals(types, ["m.room.create|", "m.room.name|"], `${roomName(i)} required_state`);
        const nameEvent = data.required_state.find((e) => e.type === "m.room.name")!;
        assertEquals(nameEvent.content.name, roomName(i));
        assert(typeof data.bump_stamp === "number", `${roomName(i)}: no bump_stamp`);
        assert(data.bump_stamp < previousBump, `${roomName(i)} out of bump_stamp order`);
        previousBump = data.bump_stamp;
        assertEquals(data.joined_count, 1);
      }
      assertEquals(slidingSync.getListData("all")?.joinedCount, ROOMS);

      // --- A range change: a second window; only its 20 rooms come, the first 20 are not resent.
      let mark = rec.mark();
      slidingSync.setListRanges("all", [[0, 19], [150, 169]]);
      const window = await rec.nextRooms("the rooms of the new range", mark);
      const second = Array.from({ length: 20 }, (_, i) => atIndex(150 + i));
      assertEquals([...window.keys()].sort(), [...second].sort(), "the new range's rooms");
      for (const data of window.values()) {
        assertEquals(data.initial, true);
        assertEquals(data.timeline.length, 1);
      }
      assertEquals(rec.responses.at(-1)?.lists?.all?.count, ROOMS);

      // --- A room subscription outside both ranges: sent once by the SDK, then sticky.
      const subscribed = atIndex(250);
      mark = rec.mark();
      slidingSync.modifyRoomSubscriptions(new Set([subscribed]));
      const sub = await rec.nextRooms("the subscribed room", mark);
      assertEquals([...sub.keys()], [subscribed]);
      const subData = sub.get(subscribed)!;
      assertEquals(subData.initial, true);
      assertEquals(subData.timeline.length, 5, "the subscription's timeline_limit");
      assertEquals(subData.timeline.at(-1)?.type, "m.room.name");
      assertEquals(
        subData.required_state.map((e) => `${e.type}|${e.state_key}`).sort(),
        ["m.room.create|", `m.room.member|${alice.userId}`],
        "the subscription's required_state ($ME)",
      );
      assert(typeof subData.prev_batch === "string", "no prev_batch on a limited timeline");

      // --- New messages while the SDK long-polls: each reaches it incrementally.
      mark = rec.mark();
      const inRange = atIndex(9); // in the first window, already sent
      const below = atIndex(289); // in no window: a message bumps it to the top
      const sent = new Map<string, string>();
      for (
        const [roomId, body] of [
          [subscribed, "to the subscribed room"],
          [inRange, "to a room in range"],
          [below, "to a room far down the list"],
        ]
      ) {
        const res = await sendText(http, alice, roomId, body);
        assertEquals(res.status, 200, JSON.stringify(res.body));
        sent.set(roomId, res.body.event_id);
      }
      await waitUntil(
        "the three messages to reach the SDK",
        () =>
          [...sent].every(([roomId, eventId]) =>
            rec.since(mark).some((r) =>
              r.roomId === roomId && timelineIds(r.data).includes(eventId)
            )
          ),
      );
      const arrived = rec.since(mark);
      const of = (roomId: string) => arrived.filter((r) => r.roomId === roomId);
      // The room in range: only its new message, not the room again.
      const inRangeData = of(inRange);
      assertEquals(inRangeData.length, 1, "the room in range was sent twice");
      assertEquals(timelineIds(inRangeData[0].data), [sent.get(inRange)]);
      assert(!inRangeData[0].data.initial, "an incremental update marked initial");
      assertEquals(inRangeData[0].data.num_live, 1);
      // The subscribed room: its message through the subscription (sticky: sent once).
      assert(
        of(subscribed).some((r) => timelineIds(r.data).at(-1) === sent.get(subscribed)),
        "the subscribed room's message",
      );
      // The room bumped into the first window: never sent on this connection, so sent whole.
      const belowData = of(below).find((r) => timelineIds(r.data).includes(sent.get(below)!))!;
      assertEquals(belowData.data.initial, true, "a room new to the window must be initial");
      assertEquals(timelineIds(belowData.data), [sent.get(below)]);
      assertEquals(belowData.data.name, roomName(rooms.indexOf(below)));
      // Two rooms from above the second window (subscribed and below were under it) moved to the
      // top, so the second window slid down by two rooms: the two rooms now at 150 and 151.
      const initial = new Set(arrived.filter((r) => r.data.initial).map((r) => r.roomId));
      for (const roomId of [below, atIndex(148), atIndex(149)]) {
        assert(initial.has(roomId), `${roomName(rooms.indexOf(roomId))} not sent as initial`);
      }
      for (const roomId of initial) {
        assert(
          [below, atIndex(148), atIndex(149), subscribed].includes(roomId),
          `${roomName(rooms.indexOf(roomId))} sent again as initial`,
        );
      }
      // The newest bump_stamp is the last message's room.
      const bumps = arrived.filter((r) => typeof r.data.bump_stamp === "number");
      const newest = bumps.reduce((a, b) => (b.data.bump_stamp! > a.data.bump_stamp! ? b : a));
      assertEquals(newest.roomId, below);
      assertEquals(rec.responses.at(-1)?.lists?.all?.count, ROOMS);
      assertEquals(rec.errors, [], "SlidingSync reported errors");
      failed = false;
    } finally {
      slidingSync?.stop();
      client?.stopClient();
      if (failed) {
        console.error("failed requests:\n  " + failures.join("\n  "));
        console.error("sliding sync errors:\n  " + (recorder?.errors.join("\n  ") ?? ""));
        console.error("client log:\n  " + logs.slice(-40).join("\n  "));
        console.error(
          "server output (tail):\n" + server.output().split("\n").slice(-60).join("\n"),
        );
      }
      await server.stop();
    }
  },
});

function roomName(i: number): string {
  return `Room ${String(i).padStart(3, "0")}`;
}

/**
 * Start `session`'s client on sliding sync through the SDK's SlidingSyncSdk, as Element Web
 * does: one list of the newest rooms with the state its crypto needs (encryption, members), the
 * SDK's extensions (e2ee, to_device, account_data, typing, receipts); resolves once the first
 * response is processed.
 */
async function startSlidingClient(session: CryptoSession): Promise<SlidingSync> {
  const requiredState: [string, string][] = [
    ["m.room.create", ""],
    ["m.room.name", ""],
    ["m.room.encryption", ""],
    ["m.room.member", "*"],
  ];
  const slidingSync = new SlidingSync(
    session.client.baseUrl,
    new Map([["rooms", { ranges: [[0, 49]], timeline_limit: 20, required_state: requiredState }]]),
    { timeline_limit: 20, required_state: requiredState },
    session.client,
    POLL_TIMEOUT_MS,
  );
  await session.client.startClient({
    slidingSync,
    pendingEventOrdering: sdk.PendingEventOrdering.Detached,
  });
  await waitUntil(
    `${session.userId}'s first sliding sync`,
    () => {
      const state = session.client.getSyncState();
      if (state === sdk.SyncState.Error) {
        throw new Error(`sliding sync failed: ${session.failures.join("; ")}`);
      }
      return state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing;
    },
  );
  return slidingSync;
}

/** What a client's sync traffic carried: a `fetch` that reads the sync answers it passes on. */
class SyncTraffic {
  v2Syncs = 0;
  toDeviceEvents = 0;
  otkCounts = 0;
  deviceListChanges = 0;

  readonly fetch: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const path = new URL(request.url).pathname;
    const res = await fetch(request);
    if (/^\/_matrix\/client\/(v3|r0)\/sync$/.test(path)) this.v2Syncs++;
    if (path.endsWith("/org.matrix.simplified_msc3575/sync") && res.ok) {
      const body = await res.clone().json();
      const ext = body.extensions ?? {};
      this.toDeviceEvents += ext.to_device?.events?.length ?? 0;
      if (ext.e2ee?.device_one_time_keys_count) this.otkCounts++;
      this.deviceListChanges += ext.e2ee?.device_lists?.changed?.length ?? 0;
    }
    return res;
  };
}

/**
 * Wait until the sliding-sync device decrypts `eventId`: SlidingSyncSdk maps timeline events
 * without decrypting them (only a room's latest events are, as Element shows them), so this
 * asks for the room's events to be decrypted as a client rendering the timeline would.
 */
async function assertSlidingDecrypts(
  reader: CryptoSession,
  roomId: string,
  sent: { eventId: string; body: string; sender: string },
): Promise<void> {
  const message = await waitUntil(
    `${reader.userId} (sliding sync) to decrypt "${sent.body}"`,
    async () => {
      await reader.client.getRoom(roomId)?.decryptAllEvents();
      return decryptedMessages(reader, roomId).find((m) => m.eventId === sent.eventId);
    },
    30_000,
    200,
  );
  assertEquals(message.sender, sent.sender);
  assertEquals(message.body, sent.body);
  assertEquals(message.wireType, "m.room.encrypted");
}

Deno.test({
  name: "js-sdk Rust crypto over sliding sync: e2ee and to_device extensions carry keys both ways",
  // The SDK leaves timers behind after stopClient (crypto machine tasks, request timeouts).
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startServerProcess();
    const failures: string[] = [];
    const sessions: CryptoSession[] = [];
    let failed = true;
    try {
      await registerWithPassword(server.baseUrl, "alice", PASSWORD);
      await registerWithPassword(server.baseUrl, "bob", PASSWORD);
      // Alice on sync v2, as in js_sdk_crypto_test.ts.
      const alice = await openUploadedCryptoClient(
        { baseUrl: server.baseUrl, user: "alice", password: PASSWORD, failures },
        sessions,
      );
      // Bob on sliding sync: his one-time keys count and device lists come through the e2ee
      // extension, room keys through to_device.
      const bobTraffic = new SyncTraffic();
      const bob = await loginCryptoClient({
        baseUrl: server.baseUrl,
        user: "bob",
        password: PASSWORD,
        deviceDisplayName: "bob on sliding sync",
        failures,
        fetch: bobTraffic.fetch,
      });
      sessions.push(bob);
      await startSlidingClient(bob);
      await waitForOwnDeviceKeysUploaded(bob);

      const roomId = await createEncryptedRoom(alice, [bob.userId], "Sliding secrets");
      await joinEncryptedRoom(bob, roomId);
      await waitForMember(alice, roomId, bob.userId);
      await waitForMember(bob, roomId, alice.userId);
      assertEquals(bob.client.getRoom(roomId)?.name, "Sliding secrets");

      // Alice -> Bob: the megolm key reaches bob's device through the to_device extension.
      const fromAlice = await sendEncrypted(alice, roomId, "Hello Bob, over sliding sync");
      await assertSlidingDecrypts(bob, roomId, fromAlice);
      // Bob -> Alice: bob's crypto found alice's device (device lists through e2ee) and claimed
      // its one-time key; alice decrypts on sync v2.
      const fromBob = await sendEncrypted(bob, roomId, "Hello Alice, from sliding sync");
      await assertDecrypts(alice, roomId, fromBob);
      // And once more each way, on the sessions now set up.
      const again = await sendEncrypted(alice, roomId, "Second secret for Bob");
      await assertSlidingDecrypts(bob, roomId, again);
      const reply = await sendEncrypted(bob, roomId, "Second secret for Alice");
      await assertDecrypts(alice, roomId, reply);
      for (const message of [fromAlice, fromBob, again, reply]) {
        await assertEncryptedOnServer(alice, roomId, message);
      }

      // A second device of alice logged in later: bob (sliding sync) learns of it through
      // device_lists.changed in the e2ee extension and shares his next key with it too.
      const alice2 = await openUploadedCryptoClient(
        {
          baseUrl: server.baseUrl,
          user: "alice",
          password: PASSWORD,
          deviceDisplayName: "alice's second device",
          failures,
        },
        sessions,
      );
      await waitUntil(
        "bob's crypto to list alice's second device",
        async () => {
          const devices = await bob.crypto.getUserDeviceInfo([alice.userId]);
          return devices.get(alice.userId)?.has(alice2.deviceId);
        },
        30_000,
        200,
      );
      const forBoth = await sendEncrypted(bob, roomId, "For both of Alice's devices");
      await assertDecrypts(alice2, roomId, forBoth);
      await assertDecrypts(alice, roomId, forBoth);

      // All of it came to bob through sliding sync and its extensions: never sync v2, room keys
      // as to-device events, and the e2ee extension's counts and device lists.
      assertEquals(bobTraffic.v2Syncs, 0, "bob's client used sync v2");
      assert(bobTraffic.toDeviceEvents > 0, "no to-device event came through sliding sync");
      assert(bobTraffic.otkCounts > 0, "no one-time key count came through the e2ee extension");
      assert(bobTraffic.deviceListChanges > 0, "no device list change came through e2ee");
      failed = false;
    } finally {
      if (failed) console.error(cryptoFailureReport(sessions));
      for (const session of sessions) session.stop();
      if (failed) {
        console.error("failed requests:\n  " + failures.join("\n  "));
        console.error(
          "server output (tail):\n" + server.output().split("\n").slice(-60).join("\n"),
        );
      }
      await server.stop();
    }
  },
});
