/**
 * Two real Tessera processes federating over HTTPS on loopback with a throwaway CA (the issue's
 * end-to-end scenarios): B's users join a room created on A by room ID (with via) and by alias;
 * history made before the join is backfilled by B's /messages; messages flow both ways, each
 * returned by the other side's /sync long-poll; A's user invites B's, who sees the invite in
 * /sync and joins; a ban on A removes B's user on both sides; B restarts mid-stream and loses
 * nothing; A goes down while B sends and B's queue retries until everything arrives, also when
 * B itself restarts with the events still queued; and a transaction A answers with 500 is sent
 * again under the same ID.
 *
 * One cluster serves the whole scenario (each process start costs a second or two). Waiting for
 * convergence has a deadline; nothing asserts on timing.
 *
 * The last test drops one transaction on the in-process network (a refusal a real process
 * cannot be made to give on demand) and checks the sender retries it under the same ID.
 */
import assert from "node:assert/strict";
import { type FederationProcess, startServerProcesses } from "./server_processes.ts";
import { startNetwork } from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import type { JsonResponse, RequestOptions } from "../routes/test_server.ts";
import { KvInboundTransactionStore } from "../../kv/inbound_transaction_store.ts";

const enc = encodeURIComponent;

/** Anything that answers client API requests (a process or an in-process server). */
interface ClientApi {
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
}

/** Poll `probe` until it returns a value other than undefined, or fail after `ms`. */
async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never converged: ${what}${last ? ` (last error: ${last})` : ""}`);
}

async function ok(
  server: ClientApi,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<JsonResponse["body"]> {
  const res = await server.request(method, path, options);
  assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

function send(server: ClientApi, user: RegisteredUser, roomId: string, body: string) {
  return server.request(
    "PUT",
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
    { token: user.accessToken, body: { msgtype: "m.text", body } },
  );
}

async function say(server: ClientApi, user: RegisteredUser, roomId: string, body: string) {
  const res = await send(server, user, roomId, body);
  assert.equal(res.status, 200, `${body}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.event_id as string;
}

/** A sync: initial without `since`, else a long-poll of `timeout` ms. */
function sync(server: ClientApi, user: RegisteredUser, since?: string, timeout = 0) {
  const query = since === undefined ? `?timeout=0` : `?since=${enc(since)}&timeout=${timeout}`;
  return ok(server, "GET", `/_matrix/client/v3/sync${query}`, { token: user.accessToken });
}

/** Message bodies of `roomId` in a sync response's joined timeline. */
function syncedBodies(response: JsonResponse["body"], roomId: string): string[] {
  const events = response.rooms?.join?.[roomId]?.timeline?.events ?? [];
  return events
    .filter((e: { type: string }) => e.type === "m.room.message")
    .map((e: { content: { body: string } }) => e.content.body);
}

/**
 * Long-poll sync from `since` until `bodies` have all appeared in `roomId`'s timeline; the
 * bodies seen on the way and the last token.
 */
async function syncUntil(
  server: ClientApi,
  user: RegisteredUser,
  roomId: string,
  since: string,
  bodies: string[],
): Promise<{ seen: string[]; next: string }> {
  const seen: string[] = [];
  let next = since;
  await eventually(`${user.userId} syncs ${bodies.join(", ")}`, async () => {
    const response = await sync(server, user, next, 10_000);
    next = response.next_batch;
    seen.push(...syncedBodies(response, roomId));
    return bodies.every((b) => seen.includes(b)) ? true : undefined;
  }, 45_000);
  return { seen, next };
}

/** Message bodies of `roomId` through /messages, oldest first, paging back to the start. */
async function history(server: ClientApi, user: RegisteredUser, roomId: string) {
  const bodies: string[] = [];
  let from: string | undefined;
  for (let page = 0; page < 20; page++) {
    const query = `?dir=b&limit=10${from ? `&from=${enc(from)}` : ""}`;
    const res = await ok(
      server,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/messages${query}`,
      {
        token: user.accessToken,
      },
    );
    for (const e of res.chunk) if (e.type === "m.room.message") bodies.unshift(e.content.body);
    if (res.end === undefined || res.chunk.length === 0) break;
    from = res.end;
  }
  return bodies;
}

async function membershipOf(
  server: ClientApi,
  viewer: RegisteredUser,
  roomId: string,
  userId: string,
) {
  const res = await server.request(
    "GET",
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`,
    { token: viewer.accessToken },
  );
  return res.status === 200 ? res.body.membership as string : undefined;
}

/** The event with `eventId`, as `viewer` on `server` sees it, or undefined while it is missing. */
async function eventOn(server: ClientApi, viewer: RegisteredUser, roomId: string, eventId: string) {
  const res = await server.request(
    "GET",
    `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`,
    { token: viewer.accessToken },
  );
  return res.status === 200 ? res.body : undefined;
}

/** How many transactions from `from` to `to` have failed so far, as `from` logged them. */
function failedTransactions(from: FederationProcess, to: FederationProcess): number {
  const line = new RegExp(
    `federation: transaction \\S+ to ${to.serverName.replaceAll(".", "\\.")} failed`,
    "g",
  );
  return from.output().match(line)?.length ?? 0;
}

function dumpOutput(servers: FederationProcess[]) {
  for (const s of servers) console.error(`--- ${s.serverName}\n${s.output().slice(-6000)}`);
}

Deno.test({
  name: "two processes: joins by ID and alias, backfill, messages both ways, invite, ban, restarts",
  async fn(t) {
    const cluster = await startServerProcesses(2);
    const [a, b] = cluster.servers;
    try {
      const alice = await a.register("alice");
      const bob = await b.register("bob");
      const carol = await b.register("carol");
      const dave = await b.register("dave");

      const created = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
        token: alice.accessToken,
        body: { preset: "public_chat", room_alias_name: "lobby", name: "Lobby" },
      });
      const roomId: string = created.room_id;
      const earlier = ["before 1", "before 2", "before 3"];
      for (const body of earlier) await say(a, alice, roomId, body);

      await t.step("B's user joins by alias (B not yet in the room)", async () => {
        const joined = await ok(
          b,
          "POST",
          `/_matrix/client/v3/join/${enc(`#lobby:${a.serverName}`)}`,
          {
            token: carol.accessToken,
            body: {},
          },
        );
        assert.equal(joined.room_id, roomId);
        // A learns of the join through send_join, at once.
        assert.equal(await membershipOf(a, alice, roomId, carol.userId), "join");
        assert.equal(await membershipOf(b, carol, roomId, carol.userId), "join");
      });

      await t.step("B's user joins by room ID with via (B not yet in the room)", async () => {
        const side = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
          token: alice.accessToken,
          body: { preset: "public_chat", name: "Side" },
        });
        const joined = await ok(
          b,
          "POST",
          `/_matrix/client/v3/join/${enc(side.room_id)}?via=${enc(a.serverName)}`,
          {
            token: bob.accessToken,
            body: {},
          },
        );
        assert.equal(joined.room_id, side.room_id);
        assert.equal(await membershipOf(a, alice, side.room_id, bob.userId), "join");
        assert.equal(await membershipOf(b, bob, side.room_id, bob.userId), "join");
        // Into the lobby, which B now holds, Bob's join is B's own; A hears of it from B.
        await ok(b, "POST", `/_matrix/client/v3/join/${enc(roomId)}`, {
          token: bob.accessToken,
          body: {},
        });
        await eventually(
          "A sees Bob's join",
          async () =>
            (await membershipOf(a, alice, roomId, bob.userId)) === "join" ? true : undefined,
        );
        for (const [server, viewer] of [[a, alice], [b, bob]] as const) {
          const members = await ok(
            server,
            "GET",
            `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`,
            {
              token: viewer.accessToken,
            },
          );
          assert.deepEqual(
            Object.keys(members.joined).sort(),
            [alice.userId, bob.userId, carol.userId].sort(),
          );
        }
      });

      await t.step("history from before B joined is backfilled by B's /messages", async () => {
        const bodies = await history(b, bob, roomId);
        assert.deepEqual(bodies, earlier);
      });

      await t.step("messages flow both ways, returned by /sync long-polls", async () => {
        const bobSince = (await sync(b, bob)).next_batch;
        const aliceSince = (await sync(a, alice)).next_batch;
        // The long-poll is waiting when A's message is sent.
        const bobPoll = syncUntil(b, bob, roomId, bobSince, ["hello from A"]);
        await new Promise((r) => setTimeout(r, 200));
        await say(a, alice, roomId, "hello from A");
        assert.ok((await bobPoll).seen.includes("hello from A"));

        const alicePoll = syncUntil(a, alice, roomId, aliceSince, ["hello from B"]);
        await new Promise((r) => setTimeout(r, 200));
        await say(b, bob, roomId, "hello from B");
        const aliceSaw = await alicePoll;
        assert.ok(aliceSaw.seen.includes("hello from B"));
        // A's own message came first in A's timeline, and nothing twice.
        assert.deepEqual(aliceSaw.seen.filter((m) => m.startsWith("hello")), [
          "hello from A",
          "hello from B",
        ]);
      });

      await t.step("A's user invites B's, who sees it in /sync and joins", async () => {
        const room = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
          token: alice.accessToken,
          body: { preset: "private_chat", name: "Plans" },
        });
        const davesSince = (await sync(b, dave)).next_batch;
        await ok(a, "POST", `/_matrix/client/v3/rooms/${enc(room.room_id)}/invite`, {
          token: alice.accessToken,
          body: { user_id: dave.userId },
        });
        const invited = await eventually("dave sees the invite", async () => {
          const response = await sync(b, dave, davesSince, 5_000);
          return response.rooms?.invite?.[room.room_id];
        });
        const events = invited.invite_state.events as {
          type: string;
          state_key: string;
          content: { membership?: string; name?: string };
        }[];
        assert.equal(
          events.find((e) => e.type === "m.room.member" && e.state_key === dave.userId)?.content
            .membership,
          "invite",
        );
        assert.equal(events.find((e) => e.type === "m.room.name")?.content.name, "Plans");
        await ok(b, "POST", `/_matrix/client/v3/rooms/${enc(room.room_id)}/join`, {
          token: dave.accessToken,
          body: {},
        });
        assert.equal(await membershipOf(a, alice, room.room_id, dave.userId), "join");
        await say(b, dave, room.room_id, "thanks for the invite");
        await eventually("dave's message reaches A", async () => {
          const bodies = await history(a, alice, room.room_id);
          return bodies.includes("thanks for the invite") ? true : undefined;
        });
      });

      await t.step("a ban on A removes B's user on both sides", async () => {
        await ok(a, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, {
          token: alice.accessToken,
          body: { user_id: carol.userId, reason: "spam" },
        });
        assert.equal(await membershipOf(a, alice, roomId, carol.userId), "ban");
        await eventually(
          "B sees carol banned",
          async () =>
            (await membershipOf(b, bob, roomId, carol.userId)) === "ban" ? true : undefined,
        );
        const refused = await send(b, carol, roomId, "still here?");
        assert.equal(refused.status, 403, JSON.stringify(refused.body));
        const joined = await ok(b, "GET", "/_matrix/client/v3/joined_rooms", {
          token: carol.accessToken,
        });
        assert.ok(!joined.joined_rooms.includes(roomId));
        const members = await ok(
          a,
          "GET",
          `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`,
          {
            token: alice.accessToken,
          },
        );
        assert.deepEqual(Object.keys(members.joined).sort(), [alice.userId, bob.userId].sort());
      });

      await t.step("B restarts mid-stream and loses nothing", async () => {
        const bobSince = (await sync(b, bob)).next_batch;
        const aliceSince = (await sync(a, alice)).next_batch;
        // Bob's last message is still in B's queue (or on its way) when B stops.
        const bobBefore = await say(b, bob, roomId, "B before its restart");
        await b.stop();
        const whileDown = ["while B was down 1", "while B was down 2", "while B was down 3"];
        for (const body of whileDown) await say(a, alice, roomId, body);
        await b.start();
        // B's events from before are still there.
        assert.ok(await eventOn(b, bob, roomId, bobBefore));
        // Nothing is lost: B's user syncs on from the token taken before the restart and gets
        // every message A sent meanwhile, and A gets B's last one.
        const bobSaw = await syncUntil(b, bob, roomId, bobSince, whileDown);
        assert.deepEqual(
          bobSaw.seen.filter((m) => m !== "B before its restart"),
          whileDown,
        );
        await say(b, bob, roomId, "B after its restart");
        const aliceSaw = await syncUntil(a, alice, roomId, aliceSince, [
          "B before its restart",
          "B after its restart",
        ]);
        assert.deepEqual(
          aliceSaw.seen.filter((m) => m.startsWith("B ")),
          ["B before its restart", "B after its restart"],
        );
      });

      await t.step("A is down while B sends; B's queue retries until all arrives", async () => {
        const failuresBefore = failedTransactions(b, a);
        await a.stop();
        const sent: string[] = [];
        for (const body of ["while A was down 1", "while A was down 2", "while A was down 3"]) {
          sent.push(await say(b, bob, roomId, body));
        }
        // B tried, and its transactions to A failed.
        await eventually(
          "B's transaction to A fails",
          () => Promise.resolve(failedTransactions(b, a) > failuresBefore ? true : undefined),
        );
        await a.start();
        // Nobody on A speaks: B's retries alone bring the events.
        for (const eventId of sent) {
          await eventually(
            `${eventId} reaches A`,
            () => eventOn(a, alice, roomId, eventId),
            45_000,
          );
        }
        const bodies = await history(a, alice, roomId);
        assert.deepEqual(bodies.filter((m) => m.startsWith("while A was down")), [
          "while A was down 1",
          "while A was down 2",
          "while A was down 3",
        ]);
      });

      await t.step("what B queued for A survives B's restart while A is down", async () => {
        const failuresBefore = failedTransactions(b, a);
        await a.stop();
        const sent = [
          await say(b, bob, roomId, "queued across B's restart 1"),
          await say(b, bob, roomId, "queued across B's restart 2"),
        ];
        await eventually(
          "B's transaction to A fails",
          () => Promise.resolve(failedTransactions(b, a) > failuresBefore ? true : undefined),
        );
        // B stops with the events still in its outbox; A comes back first, then B.
        await b.stop();
        await a.start();
        await b.start();
        for (const eventId of sent) {
          await eventually(
            `${eventId} reaches A`,
            () => eventOn(a, alice, roomId, eventId),
            45_000,
          );
        }
        const bodies = await history(a, alice, roomId);
        assert.deepEqual(bodies.filter((m) => m.startsWith("queued across")), [
          "queued across B's restart 1",
          "queued across B's restart 2",
        ]);
      });

      await t.step("A refuses a transaction (500): B retries it under the same ID", async () => {
        // While A is stopped, an impostor on A's port (with A's certificate) answers every
        // transaction with 500, as a failing A would.
        await a.stop();
        const refused: string[] = [];
        const impostor = Deno.serve({
          hostname: "127.0.0.1",
          port: a.port,
          cert: await Deno.readTextFile(cluster.certFile),
          key: await Deno.readTextFile(cluster.keyFile),
          onListen: () => {},
        }, (request) => {
          const path = new URL(request.url).pathname;
          if (path.startsWith("/_matrix/federation/v1/send/")) refused.push(path);
          return Response.json({ errcode: "M_UNKNOWN", error: "try again" }, { status: 500 });
        });
        let eventId: string;
        try {
          eventId = await say(b, bob, roomId, "refused once");
          await eventually(
            "B's transaction reaches the impostor",
            () => Promise.resolve(refused.length > 0 ? true : undefined),
          );
        } finally {
          await impostor.shutdown();
        }
        await a.start();
        await eventually(
          "the refused event reaches A",
          () => eventOn(a, alice, roomId, eventId),
          45_000,
        );
        // A answered the same transaction ID (it keeps its answers per origin and ID).
        const txnId = decodeURIComponent(refused[0].split("/").pop()!);
        const kv = await Deno.openKv(a.kvPath);
        try {
          const answer = await new KvInboundTransactionStore(kv).answer(b.serverName, txnId);
          assert.ok(answer, `A holds no answer to ${txnId}`);
        } finally {
          kv.close();
        }
      });
    } catch (e) {
      dumpOutput(cluster.servers);
      throw e;
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test("A refuses one transaction (500, then dropped): B's queue retries it under the same ID", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  try {
    const a = net.servers["a.test"];
    const b = net.servers["b.test"];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const room = await ok(a, "POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId: string = room.room_id;
    await ok(b, "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {
      token: bob.accessToken,
      body: {},
    });

    const refused: string[] = [];
    net.intercept((request) => {
      if (request.origin !== "b.test" || !request.path.startsWith("/_matrix/federation/v1/send/")) {
        return "deliver";
      }
      refused.push(request.path);
      if (refused.length === 1) return { status: 500, body: { errcode: "M_UNKNOWN" } };
      if (refused.length === 2) return "drop";
      return "deliver";
    });
    const eventId = await say(b, bob, roomId, "refused, then retried");
    await b.deps.federationSender.runOnce();
    assert.equal(await a.deps.eventStore.getEvent(eventId), null);
    // Backoff holds the stream; A reaching B clears it (as the spec's backoff reset does).
    await a.deps.federationSender.noteInboundRequest("b.test");
    await b.deps.federationSender.noteInboundRequest("a.test");
    await b.deps.federationSender.runOnce();
    assert.equal(await a.deps.eventStore.getEvent(eventId), null);
    await b.deps.federationSender.noteInboundRequest("a.test");
    await b.deps.federationSender.runOnce();
    assert.equal((await a.deps.eventStore.getEvent(eventId))?.status, "accepted");
    // Three attempts, one transaction: the retry kept its ID, so A could tell it apart.
    assert.equal(refused.length, 3);
    assert.equal(new Set(refused).size, 1);
  } finally {
    await net.close();
  }
});
