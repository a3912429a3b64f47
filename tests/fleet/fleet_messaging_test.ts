/**
 * The fleet as users see it (issue 12): three real processes on one KV file, matrix-js-sdk
 * clients spread over them at random, 200 messages exchanged in one room, and every client sees
 * all of them, in the same order, each sender's in the order sent.
 *
 * The clients long-poll with a 120 s timeout, far longer than this test's guard: a message whose
 * commit in one process does not wake the waiting `/sync` in another stalls that client until
 * its poll times out, and the guard reports which client (on which process) stalled and which
 * messages (sent through which processes) it lacks, rather than the test passing slowly.
 */
import * as sdk from "matrix-js-sdk";
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "../routes/client_harness.ts";
import { quietGlobalSdkLogger, quietLogger } from "../clients/crypto_client.ts";
import { describeClientError, recordingFetch, startSyncing } from "../clients/matrix_helpers.ts";
import { type Fleet, type FleetProcess, startFleet } from "./fleet_harness.ts";

const PROCESSES = 3;
const NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"];
const MESSAGES = 200;
/** The clients' long-poll timeout: a missed wake-up stalls a client this long. */
const POLL_TIMEOUT_MS = 120_000;
/** How long the test waits for every client to see every message before it reports a stall. */
const GUARD_MS = 60_000;

interface FleetClient {
  name: string;
  userId: string;
  process: FleetProcess;
  client: sdk.MatrixClient;
}

/** `items` in a random order (Fisher-Yates). */
function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The m.room.message events of `roomId` in a client's live timeline, oldest first. */
function liveMessages(client: sdk.MatrixClient, roomId: string): sdk.MatrixEvent[] {
  const room = client.getRoom(roomId);
  if (!room) return [];
  return room.getLiveTimeline().getEvents().filter((e) =>
    e.getType() === sdk.EventType.RoomMessage
  );
}

Deno.test({
  name: "fleet: js-sdk clients on three processes exchange 200 messages, all seen in order",
  // The SDK keeps timers of its own after stopClient (retry backoffs); the processes and the
  // KV file are cleaned up in `finally` regardless.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  quietGlobalSdkLogger();
  const fleet: Fleet = await startFleet(PROCESSES);
  const failures: string[] = [];
  const sdkLog: string[] = [];
  const clients: FleetClient[] = [];
  let failed = true;
  try {
    // Every process gets clients; which clients is random.
    const placement = shuffled(NAMES.map((_, i) => i % PROCESSES));
    for (const [i, name] of NAMES.entries()) {
      const process = fleet.processes[placement[i]];
      const session = await registerUser(process, name);
      const client = sdk.createClient({
        baseUrl: process.baseUrl,
        userId: session.userId,
        accessToken: session.accessToken,
        deviceId: session.deviceId,
        store: new sdk.MemoryStore(),
        fetchFn: recordingFetch(failures),
        logger: quietLogger(`${name}@${process.index}`, sdkLog),
      });
      clients.push({ name, userId: session.userId, process, client });
    }
    const where = clients.map((c) => `${c.name}@process${c.process.index}`).join(", ");

    const [creator, ...joiners] = clients;
    const { room_id: roomId } = await creator.client.createRoom({ preset: sdk.Preset.PublicChat });
    for (const c of joiners) await c.client.joinRoom(roomId);

    // A filter whose timeline limit exceeds the whole exchange: no sync can be a gap.
    for (const c of clients) {
      const filter = new sdk.Filter(c.userId);
      filter.setDefinition({ room: { timeline: { limit: MESSAGES + 50 } } });
      await startSyncing(c.client, c.userId, 20, { pollTimeout: POLL_TIMEOUT_MS, filter });
    }

    // Each client sends its share one after another; all clients at once, so appends from
    // three processes race on the one room.
    const sentBy = new Map<string, { sender: FleetClient; seq: number }>();
    const perClient = Math.ceil(MESSAGES / clients.length);
    let next = 0;
    const plan = clients.map((c) => {
      const bodies: string[] = [];
      for (let seq = 0; seq < perClient && next < MESSAGES; seq++, next++) {
        const body = `${c.name} #${seq}`;
        bodies.push(body);
        sentBy.set(body, { sender: c, seq });
      }
      return { c, bodies };
    });
    await Promise.all(plan.map(async ({ c, bodies }) => {
      for (const body of bodies) {
        try {
          await c.client.sendTextMessage(roomId, body);
        } catch (error) {
          throw new Error(
            `${c.name}@process${c.process.index} sending "${body}": ${describeClientError(error)}`,
          );
        }
      }
    }));

    // Wait (bounded by the guard) until every client holds all of them.
    const deadline = Date.now() + GUARD_MS;
    const counts = () => clients.map((c) => liveMessages(c.client, roomId).length);
    while (counts().some((n) => n < MESSAGES) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const stalled = clients.filter((c) => liveMessages(c.client, roomId).length < MESSAGES);
    if (stalled.length > 0) {
      const report = stalled.map((c) => {
        const seen = new Set(liveMessages(c.client, roomId).map((e) => e.getContent().body));
        const missing = [...sentBy].filter(([body]) => !seen.has(body));
        const through = new Set(missing.map(([, m]) => `process${m.sender.process.index}`));
        return `${c.name} on process${c.process.index} has ${seen.size}/${MESSAGES}, missing ` +
          `${missing.length} (first "${missing[0]?.[0]}") sent through ${[...through].join(", ")}`;
      });
      throw new Error(
        `clients stalled ${GUARD_MS / 1000} s after the last send, with a ${
          POLL_TIMEOUT_MS / 1000
        } s long-poll (a commit in one process did not wake a /sync waiting in another):\n  ` +
          report.join("\n  ") + `\n(clients: ${where})`,
      );
    }

    // The same 200 events in the same order for everyone, no duplicates; each sender's in the
    // order it sent them.
    const reference = liveMessages(clients[0].client, roomId).map((e) => e.getId());
    assertEquals(new Set(reference).size, MESSAGES, "duplicate events in the timeline");
    for (const c of clients) {
      const events = liveMessages(c.client, roomId);
      assertEquals(
        events.map((e) => e.getId()),
        reference,
        `${c.name}@process${c.process.index} saw another order than ${clients[0].name} (${where})`,
      );
      const lastSeq = new Map<string, number>();
      for (const e of events) {
        const sent = sentBy.get(e.getContent().body);
        assert(sent, `${c.name} saw an unexpected message ${JSON.stringify(e.getContent())}`);
        assertEquals(e.getSender(), sent.sender.userId);
        const previous = lastSeq.get(sent.sender.name) ?? -1;
        assertEquals(sent.seq, previous + 1, `${sent.sender.name}'s messages out of order`);
        lastSeq.set(sent.sender.name, sent.seq);
      }
    }
    failed = false;
  } finally {
    for (const c of clients) c.client.stopClient();
    if (failed) {
      console.error("requests answered with an error status:\n  " + failures.join("\n  "));
      console.error("js-sdk warnings and errors (last 50):\n" + sdkLog.slice(-50).join("\n"));
      console.error(fleet.output().slice(-20_000));
    }
    await fleet.stop();
  }
});
