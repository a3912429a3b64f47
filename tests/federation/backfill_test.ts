/**
 * /messages backfills from other servers: history made on A before B's user joined reaches B's
 * client by paging back, in order, with positions below B's first and B's current state
 * untouched.
 */
import { assert, assertEquals } from "../assert.ts";
import { type NetworkServer, startNetwork } from "./in_process_network.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

const A = "a.test";
const B = "b.test";

async function send(server: NetworkServer, user: RegisteredUser, roomId: string, body: string) {
  const path = `/_matrix/client/v3/rooms/${
    encodeURIComponent(roomId)
  }/send/m.room.message/${crypto.randomUUID()}`;
  const sent = await server.request("PUT", path, {
    token: user.accessToken,
    body: { msgtype: "m.text", body },
  });
  assertEquals(sent.status, 200, JSON.stringify(sent.body));
}

/** Page back through /messages until it ends; the message bodies in the order served. */
async function pageBack(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const bodies: string[] = [];
  let from: string | undefined;
  for (let i = 0; i < 60; i++) {
    const query = `dir=b&limit=5${from ? `&from=${encodeURIComponent(from)}` : ""}`;
    const page = await server.request(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${query}`,
      { token: user.accessToken },
    );
    assertEquals(page.status, 200, JSON.stringify(page.body));
    for (const event of page.body.chunk) {
      if (event.type === "m.room.message") bodies.push(event.content.body);
    }
    if (page.body.chunk.length === 0 || page.body.end === undefined) return bodies;
    from = page.body.end;
  }
  throw new Error("/messages never ended");
}

Deno.test("backfill: history from before B joined reaches B's client through /messages", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat", room_version: "10" },
    });
    const roomId: string = created.body.room_id;
    const history = Array.from({ length: 12 }, (_, i) => `message ${i + 1}`);
    for (const body of history) await send(a, alice, roomId, body);

    const joined = await b.request(
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${A}`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    const stateBefore = await b.deps.eventStore.currentState(roomId);

    // Newest first, each once, all of them.
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assert(net.log.some((r) => r.path.startsWith("/_matrix/federation/v1/backfill/")));

    // Backfilled history sits below B's first event and leaves current state alone.
    const head = await b.deps.eventStore.roomHead(roomId);
    assert(head!.firstPosition < 1, `first position ${head!.firstPosition}`);
    assertEquals(await b.deps.eventStore.currentState(roomId), stateBefore);

    // Paging back again is served from B's store: no new backfill request reaches A.
    const requests = net.log.filter((r) => r.path.includes("/backfill/")).length;
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assertEquals(net.log.filter((r) => r.path.includes("/backfill/")).length, requests);
  } finally {
    await net.close();
  }
});

Deno.test("backfill: a history longer than one /backfill answer comes in several, across the gap", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat", room_version: "10" },
    });
    const roomId: string = created.body.room_id;
    // More than one answer holds (100 events), so the oldest of the first answer has prev
    // events B lacks: their state comes from A's /state_ids.
    const history = Array.from({ length: 110 }, (_, i) => `message ${i + 1}`);
    for (const body of history) await send(a, alice, roomId, body);
    const joined = await b.request(
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${A}`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    assertEquals(await pageBack(b, bob, roomId), [...history].reverse());
    assert(net.log.filter((r) => r.path.includes("/backfill/")).length >= 2);
    assert(net.log.some((r) => r.path.includes("/state_ids/")));
  } finally {
    await net.close();
  }
});

Deno.test("backfill: an event with a forged signature is not stored nor shown", async () => {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  try {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat", room_version: "10" },
    });
    const roomId: string = created.body.room_id;
    const history = ["one", "two", "three"];
    for (const body of history) await send(a, alice, roomId, body);
    const joined = await b.request(
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${A}`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(joined.status, 200, JSON.stringify(joined.body));
    // A's backfill answer is altered in flight: "two" is re-signed with a flipped signature.
    net.intercept(async (request) => {
      if (!request.path.includes("/backfill/")) return "deliver";
      net.intercept(undefined);
      const real = await net.transportFor(request.origin).request(request);
      const body = structuredClone(real.body) as { pdus: Record<string, unknown>[] };
      for (const pdu of body.pdus) {
        if ((pdu.content as { body?: string }).body !== "two") continue;
        const sigs = pdu.signatures as Record<string, Record<string, string>>;
        for (const byKey of Object.values(sigs)) {
          for (const k of Object.keys(byKey)) {
            byKey[k] = (byKey[k][0] === "A" ? "B" : "A") + byKey[k].slice(1);
          }
        }
      }
      return { status: 200, body: body as never };
    });
    const seen = await pageBack(b, bob, roomId);
    net.intercept(undefined);
    assert(!seen.includes("two"), JSON.stringify(seen));
    assert(seen.includes("three"), JSON.stringify(seen));
  } finally {
    await net.close();
  }
});
