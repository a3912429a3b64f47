/**
 * The federation sender over the real stores: local events reach the servers of the room's
 * remote members as transactions, a failing destination holds up no other, queued work survives
 * a restart, two processes never send one stream at once, and a request from a backed-off server
 * clears its backoff. Remote members are made by appending a join signed by their server
 * straight through the store; the transport is a recording fake, except in the last test, which
 * runs over the in-process network.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING } from "../routes/client_harness.ts";
import { member, publicRoom, say } from "../routes/sender_rooms.ts";
import { testServer } from "../domain/federation/remote_room_builder.ts";
import { startNetwork } from "./in_process_network.ts";
import { appendRemoteJoin } from "./remote_joins.ts";
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import {
  type FederationRequest,
  type FederationResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../../domain/ports/federation_transport.ts";
import { KvOutboxStore } from "../../kv/outbox_store.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { FederationSender } from "../../domain/federation/federation_sender.ts";
import { FEDERATION_STREAM } from "../../domain/federation/federation_transactions.ts";

const A = "a.test";

/** A transport that records every request and answers per destination (200 by default). */
class RecordingTransport implements FederationTransport {
  readonly requests: FederationRequest[] = [];
  readonly answers = new Map<string, (r: FederationRequest) => Promise<FederationResponse>>();

  request(request: FederationRequest): Promise<FederationResponse> {
    this.requests.push(request);
    const answer = this.answers.get(request.destination);
    return answer ? answer(request) : Promise.resolve({ status: 200, body: { pdus: {} } });
  }

  /** Requests to `destination`, and the event IDs each carried. */
  sentTo(destination: string): { path: string; eventIds: string[]; edus: JsonObject[] }[] {
    return this.requests.filter((r) => r.destination === destination).map((r) => {
      const body = r.body as { pdus: JsonObject[]; edus: JsonObject[] };
      return {
        path: r.path,
        eventIds: body.pdus.map((p) => (p.content as JsonObject).body as string),
        edus: body.edus,
      };
    });
  }

  /** Make `destination` fail the way an unreachable server does. */
  down(destination: string): void {
    this.answers.set(
      destination,
      (r) => Promise.reject(new FederationUnreachable("network", r.destination, "down")),
    );
  }
}

async function serverA(transport: FederationTransport, env: Record<string, string> = {}) {
  return await startTestServer(
    { TESSERA_SERVER_NAME: A, ...env },
    { federationTransport: transport, ...FAST_HASHING },
  );
}

const alice = `@alice:${A}`;

/** A one-shot signal: `fired` resolves once `fire` is called. */
function signal(): { fire(): void; fired: Promise<void> } {
  let fire = () => {};
  const fired = new Promise<void>((resolve) => fire = resolve);
  return { fire, fired };
}

/** A server assembled by hand, for the room helpers (they use only its sender). */
function harness(server: { deps: Parameters<typeof publicRoom>[0]["deps"] }) {
  return { deps: server.deps } as unknown as Parameters<typeof publicRoom>[0];
}

Deno.test("sender: a local message goes to the servers of the room's remote members", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await say(server, roomId, alice, "before bob");
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    await say(server, roomId, alice, "hello bob");
    await say(server, roomId, alice, "again");
    // A room with no remote member queues nothing.
    const lonely = await publicRoom(server, alice);
    await say(server, lonely, alice, "nobody else here");
    await federationSender.runOnce();

    const sent = transport.sentTo("b.test");
    assertEquals(sent.length, 1);
    assertEquals(sent[0].eventIds, ["hello bob", "again"]);
    assert(sent[0].path.startsWith("/_matrix/federation/v1/send/"));
    assertEquals(transport.requests.length, 1);
    // Delivered entries are gone; a second pass sends nothing.
    await federationSender.runOnce();
    assertEquals(transport.requests.length, 1);
    assertEquals(await new KvOutboxStore(server.kv, FEDERATION_STREAM).pending(10), []);
  } finally {
    server.close();
  }
});

Deno.test("sender: kicks and bans of remote users reach their servers, invites do not", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    // An invite reached the invitee's server through the invite API already: a transaction
    // would hand it a PDU of a room it is not in.
    await member(server, roomId, "@carol:c.test", "invite", alice);
    // The kick and the message after it share one batch: the message is authorised on the
    // state after the kick, where b.test has nobody left, so only the kick goes there.
    await Promise.all([
      member(server, roomId, "@bob:b.test", "leave", alice),
      say(server, roomId, alice, "bob is gone"),
    ]);
    await member(server, roomId, "@dave:d.test", "ban", alice);
    await federationSender.runOnce();

    const bodies = (d: string) => transport.sentTo(d).flatMap((s) => s.eventIds);
    const types = (d: string) =>
      transport.requests.filter((r) => r.destination === d).flatMap((r) =>
        (r.body as { pdus: JsonObject[] }).pdus.map((p) =>
          `${p.type}:${(p.content as JsonObject).membership ?? (p.content as JsonObject).body}`
        )
      );
    assertEquals(types("b.test"), ["m.room.member:invite", "m.room.member:leave"]);
    assertEquals(types("c.test"), []);
    assertEquals(types("d.test"), ["m.room.member:ban"]);
    assertEquals(bodies("b.test").includes("bob is gone"), false);
  } finally {
    server.close();
  }
});

Deno.test("sender: a server gets events while any of its members is joined, not after", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    const b = await testServer("b.test", 2);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", b);
    await appendRemoteJoin(eventStore, roomId, "@bert:b.test", b);
    // Each kick and the message after it share a batch (the message rides on the kick's state,
    // decided before either is committed). b.test keeps Bert after Bob's kick...
    await Promise.all([
      member(server, roomId, "@bob:b.test", "leave", alice),
      say(server, roomId, alice, "bert stays"),
    ]);
    // ...and has nobody after Bert's ban, which it still receives.
    await Promise.all([
      member(server, roomId, "@bert:b.test", "ban", alice),
      say(server, roomId, alice, "b.test is out"),
    ]);
    // Kicking a user who already left changes nothing for the server's count.
    await member(server, roomId, "@bob:b.test", "ban", alice);
    await say(server, roomId, alice, "still out");
    await federationSender.runOnce();
    const types = transport.requests.filter((r) => r.destination === "b.test").flatMap((r) =>
      (r.body as { pdus: JsonObject[] }).pdus.map((p) =>
        `${(p.content as JsonObject).membership ?? (p.content as JsonObject).body}`
      )
    );
    assertEquals(types, ["leave", "bert stays", "ban", "ban"]);
    // The projection agrees: only a.test is left in the room.
    assertEquals([...(await eventStore.serversInRoom(roomId)).keys()], [A]);
  } finally {
    server.close();
  }
});

Deno.test("sender: TESSERA_FEDERATION=off queues nothing", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport, { TESSERA_FEDERATION: "off" });
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    await say(server, roomId, alice, "hello bob");
    await federationSender.sendEdu("b.test", { edu_type: "m.typing", content: {} });
    assertEquals(await new KvOutboxStore(server.kv, FEDERATION_STREAM).pending(10), []);
    await federationSender.runOnce();
    assertEquals(transport.requests, []);
  } finally {
    server.close();
  }
});

Deno.test("sender: EDUs go in the destination's stream, beside its PDUs", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    await say(server, roomId, alice, "hello bob");
    const typing = { room_id: roomId, user_id: alice, typing: true };
    await federationSender.sendEdu("b.test", { edu_type: "m.typing", content: typing });
    // Never to ourselves.
    await federationSender.sendEdu(A, { edu_type: "m.typing", content: typing });
    await federationSender.runOnce();
    const sent = transport.sentTo("b.test");
    assertEquals(sent.length, 1);
    assertEquals(sent[0].eventIds, ["hello bob"]);
    assertEquals(sent[0].edus, [{ edu_type: "m.typing", content: typing }]);
    assertEquals(transport.sentTo(A), []);
  } finally {
    server.close();
  }
});

Deno.test("sender: a destination that fails or hangs holds up no other", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    await appendRemoteJoin(eventStore, roomId, "@carol:c.test", await testServer("c.test", 3));
    await appendRemoteJoin(eventStore, roomId, "@dave:d.test", await testServer("d.test", 4));
    // b.test fails at once, d.test hangs until the test lets it answer; c.test's transactions
    // must go out meanwhile, the second one included.
    const b = signal();
    transport.answers.set("b.test", (r) => {
      b.fire();
      return Promise.reject(new FederationUnreachable("network", r.destination, "down"));
    });
    const d = signal();
    let answerD: (r: FederationResponse) => void = () => {};
    const dAnswer = new Promise<FederationResponse>((resolve) => answerD = resolve);
    transport.answers.set("d.test", () => {
      d.fire();
      return dAnswer;
    });
    const c = [signal(), signal()];
    let cCount = 0;
    transport.answers.set("c.test", () => {
      c[cCount++]?.fire();
      return Promise.resolve({ status: 200, body: { pdus: {} } });
    });
    federationSender.start();
    await say(server, roomId, alice, "one");
    await Promise.all([b.fired, d.fired, c[0].fired]);
    await say(server, roomId, alice, "two");
    await c[1].fired;
    assertEquals(transport.sentTo("c.test").map((s) => s.eventIds), [["one"], ["two"]]);
    // d.test is still in its first transaction, b.test still backing off from its first failure.
    assertEquals(transport.sentTo("d.test").length, 1);
    assertEquals(transport.sentTo("b.test").length, 1);
    answerD({ status: 200, body: { pdus: {} } });
    await federationSender.stop();

    // b.test is backed off and keeps its entries; d.test got the rest once it answered.
    const outbox = new KvOutboxStore(server.kv, FEDERATION_STREAM);
    assertEquals((await outbox.peek("b.test", 10)).length, 2);
    assertEquals((await outbox.peek("c.test", 10)).length, 0);
    await federationSender.runOnce();
    assertEquals(transport.sentTo("d.test").map((s) => s.eventIds), [["one"], ["two"]]);
    assertEquals((await outbox.peek("d.test", 10)).length, 0);
    // Still backing off: no new attempt at b.test.
    assertEquals(transport.sentTo("b.test").length, 1);
  } finally {
    server.close();
  }
});

Deno.test("sender: a request from a backed-off server clears its backoff", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    transport.down("b.test");
    await say(server, roomId, alice, "hello bob");
    await federationSender.runOnce();
    transport.answers.delete("b.test");
    await federationSender.runOnce();
    assertEquals(transport.sentTo("b.test").length, 1);
    // What serverAuth calls for every verified request from b.test.
    await server.deps.onInboundServerRequest!("b.test");
    await federationSender.runOnce();
    const sent = transport.sentTo("b.test");
    assertEquals(sent.length, 2);
    // The retry is the same transaction.
    assertEquals(sent[1].path, sent[0].path);
    assertEquals(sent[1].eventIds, ["hello bob"]);
    // A server with no backoff: nothing to clear, nothing written.
    await server.deps.onInboundServerRequest!("c.test");
    assertEquals(await new KvOutboxStore(server.kv, FEDERATION_STREAM).pending(10), []);
  } finally {
    server.close();
  }
});

Deno.test("sender: what was queued before a restart (tried or not) goes out after it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tessera-fed-sender-" });
  const path = `${dir}/kv.sqlite3`;
  const config = loadConfig({
    TESSERA_SERVER_NAME: A,
    TESSERA_SIGNING_KEY: "A".repeat(43),
  }, { dev: true });
  try {
    const before = new RecordingTransport();
    before.down("b.test");
    let kv = await Deno.openKv(path);
    let roomId: string;
    try {
      const first = await assembleServer(config, kv, {
        federationTransport: before,
        ...FAST_HASHING,
      });
      const asServer = harness(first);
      roomId = await publicRoom(asServer, alice);
      await appendRemoteJoin(
        first.deps.eventStore,
        roomId,
        "@bob:b.test",
        await testServer("b.test", 2),
      );
      await say(asServer, roomId, alice, "sent before the crash");
      await first.deps.federationSender.runOnce();
      assertEquals(before.sentTo("b.test").length, 1);
      await say(asServer, roomId, alice, "queued, never tried");
    } finally {
      kv.close();
    }

    const after = new RecordingTransport();
    kv = await Deno.openKv(path);
    try {
      // An hour later: the backoff of the failed attempt has run out.
      const later = () => Date.now() + 3_600_000;
      const second = await assembleServer(config, kv, {
        federationTransport: after,
        ...FAST_HASHING,
        now: later,
      });
      await second.deps.federationSender.runOnce();
      const sent = after.sentTo("b.test");
      assertEquals(sent.length, 1);
      assertEquals(sent[0].eventIds, ["sent before the crash", "queued, never tried"]);
    } finally {
      kv.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sender: a stopping sender ends after the batch in flight and frees the stream", async () => {
  const transport = new RecordingTransport();
  const server = await serverA(transport);
  try {
    const { eventStore, federationSender } = server.deps;
    const roomId = await publicRoom(server, alice);
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", await testServer("b.test", 2));
    const inFlight = signal();
    let answer: (r: FederationResponse) => void = () => {};
    transport.answers.set("b.test", () => {
      inFlight.fire();
      return new Promise((resolve) => answer = resolve);
    });
    federationSender.start();
    await say(server, roomId, alice, "in flight at the stop");
    await inFlight.fired;
    // Queued behind the transaction in flight: left for whoever runs next.
    await say(server, roomId, alice, "after the stop");
    const stopped = federationSender.stop();
    answer({ status: 200, body: { pdus: {} } });
    await stopped;
    assertEquals(transport.sentTo("b.test").map((s) => s.eventIds), [["in flight at the stop"]]);
    // The lease went back with the stop: another process (a restart) sends at once.
    transport.answers.delete("b.test");
    const next = new FederationSender({
      store: eventStore,
      outbox: new KvOutboxStore(server.kv, FEDERATION_STREAM),
      transport,
      serverName: A,
      worker: { holder: "the next process" },
    });
    await next.runOnce();
    assertEquals(transport.sentTo("b.test").map((s) => s.eventIds), [
      ["in flight at the stop"],
      ["after the stop"],
    ]);
  } finally {
    server.close();
  }
});

Deno.test("sender: two processes over one KV file never send a stream at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tessera-fed-lease-" });
  const path = `${dir}/kv.sqlite3`;
  const kv1 = await Deno.openKv(path);
  const kv2 = await Deno.openKv(path);
  try {
    const config = loadConfig({ TESSERA_SERVER_NAME: A }, { dev: true });
    const transport = new RecordingTransport();
    const server = await assembleServer(config, kv1, {
      federationTransport: transport,
      ...FAST_HASHING,
    });
    const asServer = harness(server);
    const roomId = await publicRoom(asServer, alice);
    await appendRemoteJoin(
      server.deps.eventStore,
      roomId,
      "@bob:b.test",
      await testServer("b.test", 2),
    );
    await say(asServer, roomId, alice, "once only");

    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => release = resolve);
    let entered: () => void = () => {};
    const inFlight = new Promise<void>((resolve) => entered = resolve);
    transport.answers.set("b.test", async () => {
      entered();
      await released;
      return { status: 200, body: { pdus: {} } };
    });
    const senderOver = (kv: Deno.Kv, holder: string) =>
      new FederationSender({
        store: new KvEventStore(kv, { resolver: resolveState }),
        outbox: new KvOutboxStore(kv, FEDERATION_STREAM),
        transport,
        serverName: A,
        worker: { holder },
      });
    const one = senderOver(kv1, "process-1");
    const two = senderOver(kv2, "process-2");
    const first = one.runOnce();
    await inFlight;
    // The second process finds the stream leased and leaves it alone.
    await two.runOnce();
    assertEquals(transport.sentTo("b.test").length, 1);
    release();
    await first;
    await two.runOnce();
    assertEquals(transport.sentTo("b.test").length, 1);
    assertEquals(await new KvOutboxStore(kv2, FEDERATION_STREAM).pending(10), []);
  } finally {
    kv1.close();
    kv2.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sender over the in-process network: a signed request from B clears B's backoff", async () => {
  const net = await startNetwork([A, "b.test"]);
  try {
    const a = net.servers[A];
    const b = net.servers["b.test"];
    const { eventStore, federationSender } = a.deps;
    const roomId = await publicRoom(a, alice);
    const bob = { name: "b.test", key: b.deps.keyring.current };
    await appendRemoteJoin(eventStore, roomId, "@bob:b.test", bob);
    const toB = () =>
      net.log.filter((r) =>
        r.origin === A && r.destination === "b.test" &&
        r.path.startsWith("/_matrix/federation/v1/send/")
      );

    net.setReachable("b.test", false);
    await say(a, roomId, alice, "while b is down");
    await federationSender.runOnce();
    assertEquals(toB().length, 1);
    net.setReachable("b.test", true);
    await federationSender.runOnce();
    assertEquals(toB().length, 1);

    // B asks A something, signed: A's request auth verifies it and clears B's backoff.
    const asked = await net.transportFor("b.test").request({
      method: "GET",
      destination: A,
      path: `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(alice)}`,
    });
    assertEquals(asked.status < 500, true);
    await federationSender.runOnce();
    assertEquals(toB().length, 2);
    assertEquals(toB()[1].path, toB()[0].path);
  } finally {
    await net.close();
  }
});
