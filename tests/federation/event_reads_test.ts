/**
 * Reads other servers make of this one (routes/federation/event_reads.ts and
 * federation_queries.ts), over the in-process test network: b.test asks a.test with requests
 * signed by its real key. b.test's user joins a.test's rooms by an event built and signed on
 * b.test's key and appended to a.test's store, as a resident server holds a remote join.
 */
import { assert, assertEquals } from "../assert.ts";
import { type Network, type NetworkServer, startNetwork } from "./in_process_network.ts";
import { buildEvent } from "../../domain/protocol/event_builder.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";

const V3 = "/_matrix/client/v3";
const FED = "/_matrix/federation/v1";
const BOB = "@bob:b.test";

interface World {
  net: Network;
  a: NetworkServer;
  b: NetworkServer;
  alice: RegisteredUser;
}

async function world(): Promise<World> {
  const net = await startNetwork(["a.test", "b.test"], {
    env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" },
  });
  const a = net.servers["a.test"];
  const alice = await registerWithPassword(a, "alice");
  return { net, a, b: net.servers["b.test"], alice };
}

async function registerWithPassword(server: NetworkServer, localpart: string) {
  const res = await server.request("POST", `${V3}/register`, {
    body: { username: localpart, password: `pw-${localpart}`, auth: { type: "m.login.dummy" } },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return {
    userId: res.body.user_id as string,
    accessToken: res.body.access_token as string,
    deviceId: res.body.device_id as string,
  };
}

/** A request from b.test to a.test, signed by b.test (unless `signed` is false). */
async function fromB(
  w: World,
  method: "GET" | "POST",
  path: string,
  body?: JsonValue,
  signed = true,
): Promise<{ status: number; body: JsonObject }> {
  const res = await w.net.transportFor("b.test").request({
    method,
    destination: "a.test",
    path,
    ...(body !== undefined ? { body } : {}),
    signed,
  });
  return { status: res.status, body: (res.body ?? {}) as JsonObject };
}

async function createRoom(w: World, extra: JsonObject = {}): Promise<string> {
  const res = await w.a.request("POST", `${V3}/createRoom`, {
    token: w.alice.accessToken,
    body: { preset: "public_chat", ...extra },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id;
}

let txn = 0;
async function say(w: World, roomId: string, body: string, user = w.alice): Promise<string> {
  const res = await w.a.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${++txn}`,
    { token: user.accessToken, body: { msgtype: "m.text", body } },
  );
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id;
}

async function setState(w: World, roomId: string, type: string, content: JsonObject) {
  const res = await w.a.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(roomId)}/state/${type}/`,
    { token: w.alice.accessToken, body: content },
  );
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

/** A message from Bob built on the room's current state and extremities (not appended). */
async function bobMessage(w: World, roomId: string, body: string) {
  const store = w.a.deps.eventStore;
  const head = (await store.roomHead(roomId))!;
  const state = await store.currentState(roomId);
  const prevs = await store.getEvents(head.forwardExtremities);
  return await buildEvent({
    version: roomVersion(head.roomVersion)!,
    roomId,
    sender: BOB,
    type: "m.room.message",
    content: { msgtype: "m.text", body },
    prevEvents: head.forwardExtremities.map((id) => ({
      eventId: id,
      depth: prevs.get(id)!.pdu.depth,
    })),
    currentState: (key) => {
      const id = state.get(key);
      return id === undefined ? undefined : { eventId: id };
    },
    serverName: "b.test",
    signingKey: w.b.deps.keyring.current,
  });
}

/**
 * Bob of b.test joins a.test's room: his join is built and signed with b.test's key on the
 * room's current state and extremities, and appended to a.test's store as a remote event.
 */
async function remoteJoin(w: World, roomId: string, membership = "join"): Promise<string> {
  const store = w.a.deps.eventStore;
  const head = (await store.roomHead(roomId))!;
  const version = roomVersion(head.roomVersion)!;
  const state = await store.currentState(roomId);
  const prevs = await store.getEvents(head.forwardExtremities);
  const built = await buildEvent({
    version,
    roomId,
    sender: BOB,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership },
    prevEvents: head.forwardExtremities.map((id) => ({
      eventId: id,
      depth: prevs.get(id)!.pdu.depth,
    })),
    currentState: (key) => {
      const id = state.get(key);
      return id === undefined ? undefined : { eventId: id };
    },
    serverName: "b.test",
    signingKey: w.b.deps.keyring.current,
  });
  const result = await store.append({
    roomId,
    events: [{ eventId: built.eventId, pdu: built.pdu, status: "accepted" }],
  });
  assertEquals(result.events[0].status, "accepted");
  return built.eventId;
}

const enc = encodeURIComponent;
const pdus = (body: JsonObject) => body.pdus as JsonObject[];
const bodyOf = (pdu: JsonObject) => (pdu.content as JsonObject).body;

Deno.test("federation reads: /event serves a visible event as a one-PDU transaction", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const eventId = await say(w, roomId, "hello b");
    const res = await fromB(w, "GET", `${FED}/event/${enc(eventId)}`);
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body.origin, "a.test");
    assert(typeof res.body.origin_server_ts === "number");
    assertEquals(pdus(res.body).length, 1);
    const [pdu] = pdus(res.body);
    assertEquals([pdu.type, pdu.sender, pdu.room_id, bodyOf(pdu)], [
      "m.room.message",
      w.alice.userId,
      roomId,
      "hello b",
    ]);
    // A PDU as signed: hashes and signatures kept, no client-format fields added.
    assert((pdu.signatures as JsonObject)["a.test"] !== undefined);
    assertEquals(pdu.unsigned, undefined);
    assertEquals(pdu.event_id, undefined);

    const unknown = await fromB(w, "GET", `${FED}/event/${enc(`$${"A".repeat(43)}`)}`);
    assertEquals([unknown.status, unknown.body.errcode], [404, "M_NOT_FOUND"]);
    const unsigned = await fromB(w, "GET", `${FED}/event/${enc(eventId)}`, undefined, false);
    assertEquals([unsigned.status, unsigned.body.errcode], [401, "M_UNAUTHORIZED"]);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: a server with no user in the room gets 403 on every room read", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w, { preset: "private_chat" });
    const eventId = await say(w, roomId, "private");
    const room = enc(roomId);
    const e = enc(eventId);
    const refused = [
      await fromB(w, "GET", `${FED}/event/${e}`),
      await fromB(w, "GET", `${FED}/state/${room}?event_id=${e}`),
      await fromB(w, "GET", `${FED}/state_ids/${room}?event_id=${e}`),
      await fromB(w, "GET", `${FED}/event_auth/${room}/${e}`),
      await fromB(w, "GET", `${FED}/backfill/${room}?v=${e}&limit=10`),
      await fromB(w, "POST", `${FED}/get_missing_events/${room}`, {
        earliest_events: [],
        latest_events: [eventId],
      }),
      await fromB(w, "GET", `${FED}/timestamp_to_event/${room}?ts=0&dir=f`),
      // An unknown room is one b.test is not in either.
      await fromB(w, "GET", `${FED}/state_ids/${enc("!unknown:a.test")}?event_id=${e}`),
    ];
    for (const res of refused) {
      assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"], JSON.stringify(res.body));
    }
    // An invite alone does not let a server read the room.
    await remoteJoin(w, roomId, "invite");
    assertEquals((await fromB(w, "GET", `${FED}/event/${e}`)).status, 403);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: a world-readable room is readable by a server with no user in it", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await setState(w, roomId, "m.room.history_visibility", {
      history_visibility: "world_readable",
    });
    const eventId = await say(w, roomId, "for everyone");
    const res = await fromB(w, "GET", `${FED}/event/${enc(eventId)}`);
    assertEquals(res.status, 200);
    assertEquals(bodyOf(pdus(res.body)[0]), "for everyone");
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: the room's server ACL refuses a denied origin with 403 everywhere", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const eventId = await say(w, roomId, "before the ban");
    const room = enc(roomId);
    const e = enc(eventId);
    const reads = () =>
      Promise.all([
        fromB(w, "GET", `${FED}/event/${e}`),
        fromB(w, "GET", `${FED}/state/${room}?event_id=${e}`),
        fromB(w, "GET", `${FED}/state_ids/${room}?event_id=${e}`),
        fromB(w, "GET", `${FED}/event_auth/${room}/${e}`),
        fromB(w, "GET", `${FED}/backfill/${room}?v=${e}&limit=10`),
        fromB(w, "POST", `${FED}/get_missing_events/${room}`, {
          earliest_events: [],
          latest_events: [eventId],
        }),
        fromB(w, "GET", `${FED}/timestamp_to_event/${room}?ts=0&dir=f`),
        fromB(w, "GET", `${FED}/hierarchy/${room}`),
      ]);
    for (const res of await reads()) assertEquals(res.status, 200, JSON.stringify(res.body));
    // Port and case do not matter: B.TEST denies b.test.
    await setState(w, roomId, "m.room.server_acl", { allow: ["*"], deny: ["B.TEST"] });
    for (const res of await reads()) {
      assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"], JSON.stringify(res.body));
    }
    await setState(w, roomId, "m.room.server_acl", { allow: ["*"], deny: ["c.test"] });
    assertEquals((await fromB(w, "GET", `${FED}/event/${e}`)).status, 200);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: a server whose user joined later sees no joined-only history from before", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w, {
      initial_state: [{
        type: "m.room.history_visibility",
        state_key: "",
        content: { history_visibility: "joined" },
      }],
    });
    const secret = await say(w, roomId, "before b joined");
    const join = await remoteJoin(w, roomId);
    const after = await say(w, roomId, "after b joined");

    const early = await fromB(w, "GET", `${FED}/event/${enc(secret)}`);
    assertEquals(early.status, 200);
    const pruned = pdus(early.body)[0];
    // Pruned, not dropped: the DAG's shape stays, the content goes.
    assertEquals([pruned.type, bodyOf(pruned)], ["m.room.message", undefined]);
    assert(pruned.hashes !== undefined && pruned.prev_events !== undefined);
    const late = await fromB(w, "GET", `${FED}/event/${enc(after)}`);
    assertEquals(bodyOf(pdus(late.body)[0]), "after b joined");

    // Backfill from the newest event: deepest first, the same decisions.
    const res = await fromB(w, "GET", `${FED}/backfill/${enc(roomId)}?v=${enc(after)}&limit=4`);
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals(res.body.origin, "a.test");
    const events = pdus(res.body);
    assertEquals(events.length, 4);
    const depths = events.map((e) => e.depth as number);
    assertEquals(depths, [...depths].sort((x, y) => y - x));
    assertEquals(bodyOf(events[0]), "after b joined");
    assertEquals(events[1].state_key, BOB);
    assertEquals([events[2].type, bodyOf(events[2])], ["m.room.message", undefined]);

    // Another server with nobody in the room is refused; one asking for a join it holds is fine.
    const missing = await fromB(w, "POST", `${FED}/get_missing_events/${enc(roomId)}`, {
      earliest_events: [join],
      latest_events: [after],
    });
    assertEquals(missing.status, 200);
    assertEquals((missing.body.events as JsonObject[]).length, 0);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: redacted events and erased users' events leave pruned", async () => {
  const w = await world();
  try {
    const carol = await registerWithPassword(w.a, "carol");
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const join = await w.a.request("POST", `${V3}/join/${enc(roomId)}`, {
      token: carol.accessToken,
      body: {},
    });
    assertEquals(join.status, 200);
    const redacted = await say(w, roomId, "to be redacted");
    const fromCarol = await say(w, roomId, "carol speaks", carol);
    const kept = await say(w, roomId, "kept");
    const redaction = await w.a.request(
      "PUT",
      `${V3}/rooms/${enc(roomId)}/redact/${enc(redacted)}/r1`,
      { token: w.alice.accessToken, body: {} },
    );
    assertEquals(redaction.status, 200);
    const get = async (id: string) =>
      pdus((await fromB(w, "GET", `${FED}/event/${enc(id)}`)).body)[0];
    assertEquals(bodyOf(await get(redacted)), undefined);
    assertEquals(bodyOf(await get(fromCarol)), "carol speaks");
    assertEquals(bodyOf(await get(kept)), "kept");

    const challenge = await w.a.request("POST", `${V3}/account/deactivate`, {
      token: carol.accessToken,
      body: { erase: true },
    });
    const done = await w.a.request("POST", `${V3}/account/deactivate`, {
      token: carol.accessToken,
      body: {
        erase: true,
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "carol" },
          password: "pw-carol",
          session: challenge.body.session,
        },
      },
    });
    assertEquals(done.status, 200, JSON.stringify(done.body));
    assertEquals(bodyOf(await get(fromCarol)), undefined);
    assertEquals(bodyOf(await get(kept)), "kept");
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: state, state_ids and event_auth give the state before the event and its auth chain", async () => {
  const w = await world();
  try {
    // Version 10: its events cite the create event (from 12 on, the room ID stands for it).
    const roomId = await createRoom(w, { room_version: "10" });
    await remoteJoin(w, roomId);
    const topic = await setState(w, roomId, "m.room.topic", { topic: "t1" });
    const message = await say(w, roomId, "after the topic");
    const store = w.a.deps.eventStore;
    const room = enc(roomId);

    const ids = await fromB(w, "GET", `${FED}/state_ids/${room}?event_id=${enc(message)}`);
    assertEquals(ids.status, 200, JSON.stringify(ids.body));
    const before = await store.stateAtEvent(message, "before");
    assertEquals(new Set(ids.body.pdu_ids as string[]), new Set(before!.values()));
    assert((ids.body.pdu_ids as string[]).includes(topic));
    const createId = await store.currentStateEventId(roomId, "m.room.create", "");
    const chain = ids.body.auth_chain_ids as string[];
    assert(chain.includes(createId!));
    // The auth chain holds only events of the room that the state's events cite.
    const cited = new Set<string>();
    for (const event of (await store.getEvents(before!.values().toArray())).values()) {
      for (const id of event.pdu.auth_events as string[]) cited.add(id);
    }
    for (const id of cited) assert(chain.includes(id), `auth event ${id} missing`);

    // The state before the topic event does not hold it.
    const atTopic = await fromB(w, "GET", `${FED}/state_ids/${room}?event_id=${enc(topic)}`);
    assert(!(atTopic.body.pdu_ids as string[]).includes(topic));

    const full = await fromB(w, "GET", `${FED}/state/${room}?event_id=${enc(message)}`);
    assertEquals(full.status, 200);
    const statePdus = full.body.pdus as JsonObject[];
    assertEquals(statePdus.length, (ids.body.pdu_ids as string[]).length);
    const topicPdu = statePdus.find((p) => p.type === "m.room.topic")!;
    assertEquals((topicPdu.content as JsonObject).topic, "t1");
    assertEquals((full.body.auth_chain as JsonObject[]).length, chain.length);

    const auth = await fromB(w, "GET", `${FED}/event_auth/${room}/${enc(message)}`);
    assertEquals(auth.status, 200);
    const authChain = (auth.body.auth_chain as JsonObject[]).map((p) => p.type);
    assert(authChain.includes("m.room.create"));
    assert(authChain.includes("m.room.power_levels"));
    assert(authChain.includes("m.room.member"));

    // An event of another room is not found through this one.
    const other = await createRoom(w);
    const elsewhere = await say(w, other, "elsewhere");
    for (const path of ["state", "state_ids"]) {
      const res = await fromB(w, "GET", `${FED}/${path}/${room}?event_id=${enc(elsewhere)}`);
      assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"]);
    }
    const res = await fromB(w, "GET", `${FED}/event_auth/${room}/${enc(elsewhere)}`);
    assertEquals(res.status, 404);
    // Backfill from another room's event finds nothing.
    const cross = await fromB(w, "GET", `${FED}/backfill/${room}?v=${enc(elsewhere)}&limit=5`);
    assertEquals([cross.status, pdus(cross.body).length], [200, 0]);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: outliers are served by /event only; no state is served at outliers or rejected events", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const store = w.a.deps.eventStore;
    const outlier = await bobMessage(w, roomId, "held aside");
    await store.storeOutliers(roomId, [
      { eventId: outlier.eventId, pdu: outlier.pdu, status: "accepted" },
    ]);
    const got = await fromB(w, "GET", `${FED}/event/${enc(outlier.eventId)}`);
    assertEquals(got.status, 200, JSON.stringify(got.body));
    assertEquals(bodyOf(pdus(got.body)[0]), "held aside");
    const room = enc(roomId);
    for (const path of ["state", "state_ids"]) {
      const res = await fromB(w, "GET", `${FED}/${path}/${room}?event_id=${enc(outlier.eventId)}`);
      assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"]);
    }
    const walk = await fromB(w, "GET", `${FED}/backfill/${room}?v=${enc(outlier.eventId)}&limit=5`);
    assertEquals(pdus(walk.body).length, 0);

    const rejected = await bobMessage(w, roomId, "rejected");
    await store.append({
      roomId,
      events: [{ eventId: rejected.eventId, pdu: rejected.pdu, status: "rejected" }],
    });
    for (const path of ["state", "state_ids"]) {
      const res = await fromB(w, "GET", `${FED}/${path}/${room}?event_id=${enc(rejected.eventId)}`);
      assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"]);
    }
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: get_missing_events walks prev_events back to earliest_events, oldest first", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    const join = await remoteJoin(w, roomId);
    const sent: string[] = [];
    for (let i = 1; i <= 5; i++) sent.push(await say(w, roomId, `m${i}`));
    const ask = (body: JsonObject) =>
      fromB(w, "POST", `${FED}/get_missing_events/${enc(roomId)}`, body as JsonValue);
    const res = await ask({ earliest_events: [join], latest_events: [sent[4]], limit: 10 });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    assertEquals((res.body.events as JsonObject[]).map(bodyOf), ["m1", "m2", "m3", "m4"]);
    // Missing lists count as empty, as Synapse takes them.
    const empty = await ask({});
    assertEquals([empty.status, empty.body.events], [200, []]);
    const limited = await ask({ earliest_events: [join], latest_events: [sent[4]], limit: 2 });
    assertEquals((limited.body.events as JsonObject[]).map(bodyOf), ["m3", "m4"]);
    // min_depth stops the walk at that depth.
    const depth = (await w.a.deps.eventStore.getEvent(sent[2]))!.pdu.depth;
    const shallow = await ask({
      earliest_events: [],
      latest_events: [sent[4]],
      min_depth: depth,
    });
    assertEquals((shallow.body.events as JsonObject[]).map(bodyOf), ["m3", "m4"]);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: timestamp_to_event finds the closest event the origin may see", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const first = await say(w, roomId, "first");
    const last = await say(w, roomId, "last");
    const store = w.a.deps.eventStore;
    const lastTs = (await store.getEvent(last))!.pdu.origin_server_ts;
    const room = enc(roomId);
    const back = await fromB(w, "GET", `${FED}/timestamp_to_event/${room}?ts=${lastTs}&dir=b`);
    assertEquals(back.status, 200, JSON.stringify(back.body));
    assertEquals([back.body.event_id, back.body.origin_server_ts], [last, lastTs]);
    const createId = await store.currentStateEventId(roomId, "m.room.create", "");
    const forward = await fromB(w, "GET", `${FED}/timestamp_to_event/${room}?ts=0&dir=f`);
    assertEquals(forward.body.event_id, createId);
    const none = await fromB(
      w,
      "GET",
      `${FED}/timestamp_to_event/${room}?ts=${lastTs + 1_000_000}&dir=f`,
    );
    assertEquals([none.status, none.body.errcode], [404, "M_NOT_FOUND"]);
    assert(first !== last);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation queries: directory and profile answer for local aliases and users", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const alias = "#lobby:a.test";
    const put = await w.a.request("PUT", `${V3}/directory/room/${enc(alias)}`, {
      token: w.alice.accessToken,
      body: { room_id: roomId },
    });
    assertEquals(put.status, 200);
    const dir = await fromB(w, "GET", `${FED}/query/directory?room_alias=${enc(alias)}`);
    assertEquals(dir.status, 200, JSON.stringify(dir.body));
    assertEquals(dir.body, { room_id: roomId, servers: ["a.test", "b.test"] });
    for (const unknown of ["#nope:a.test", "#lobby:b.test"]) {
      const res = await fromB(w, "GET", `${FED}/query/directory?room_alias=${enc(unknown)}`);
      assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"]);
    }

    const name = await w.a.request("PUT", `${V3}/profile/${enc(w.alice.userId)}/displayname`, {
      token: w.alice.accessToken,
      body: { displayname: "Alice A" },
    });
    assertEquals(name.status, 200);
    const user = enc(w.alice.userId);
    const one = await fromB(w, "GET", `${FED}/query/profile?user_id=${user}&field=displayname`);
    assertEquals([one.status, one.body], [200, { displayname: "Alice A" }]);
    const all = await fromB(w, "GET", `${FED}/query/profile?user_id=${user}`);
    assertEquals(all.body.displayname, "Alice A");
    const missingField = await fromB(
      w,
      "GET",
      `${FED}/query/profile?user_id=${user}&field=avatar_url`,
    );
    assertEquals([missingField.status, missingField.body.errcode], [404, "M_NOT_FOUND"]);
    const nobody = await fromB(w, "GET", `${FED}/query/profile?user_id=${enc("@nobody:a.test")}`);
    assertEquals(nobody.status, 404);
    const remote = await fromB(w, "GET", `${FED}/query/profile?user_id=${enc(BOB)}`);
    assertEquals(remote.status, 400);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation queries: publicRooms (GET and POST) and the space hierarchy", async () => {
  const w = await world();
  try {
    const space = await createRoom(w, {
      name: "The Space",
      creation_content: { type: "m.space" },
    });
    const child = await createRoom(w, { name: "Public child" });
    const privateChild = await createRoom(w, { preset: "private_chat", name: "Hidden" });
    for (const id of [child, privateChild]) {
      const res = await w.a.request(
        "PUT",
        `${V3}/rooms/${enc(space)}/state/m.space.child/${enc(id)}`,
        { token: w.alice.accessToken, body: { via: ["a.test"] } },
      );
      assertEquals(res.status, 200);
    }
    const publish = await w.a.request("PUT", `${V3}/directory/list/room/${enc(child)}`, {
      token: w.alice.accessToken,
      body: { visibility: "public" },
    });
    assertEquals(publish.status, 200);

    const list = await fromB(w, "GET", `${FED}/publicRooms?limit=10`);
    assertEquals(list.status, 200, JSON.stringify(list.body));
    const chunk = list.body.chunk as JsonObject[];
    assertEquals(chunk.map((r) => [r.room_id, r.name]), [[child, "Public child"]]);
    const search = await fromB(w, "POST", `${FED}/publicRooms`, {
      filter: { generic_search_term: "nothing like it" },
    });
    assertEquals([search.status, (search.body.chunk as JsonObject[]).length], [200, 0]);
    const found = await fromB(w, "POST", `${FED}/publicRooms`, {
      limit: 5,
      filter: { generic_search_term: "public" },
    });
    assertEquals((found.body.chunk as JsonObject[]).map((r) => r.room_id), [child]);

    const tree = await fromB(w, "GET", `${FED}/hierarchy/${enc(space)}`);
    assertEquals(tree.status, 200, JSON.stringify(tree.body));
    const root = tree.body.room as JsonObject;
    assertEquals([root.room_id, root.room_type], [space, "m.space"]);
    assertEquals((root.children_state as JsonObject[]).length, 2);
    assertEquals((tree.body.children as JsonObject[]).map((r) => r.room_id), [child]);
    assertEquals(tree.body.inaccessible_children, [privateChild]);
    // Once b.test has a user in the private room, it may preview it.
    await remoteJoin(w, privateChild);
    const again = await fromB(w, "GET", `${FED}/hierarchy/${enc(space)}?suggested_only=false`);
    assertEquals(
      new Set((again.body.children as JsonObject[]).map((r) => r.room_id)),
      new Set([child, privateChild]),
    );
    const hidden = await fromB(
      w,
      "GET",
      `${FED}/hierarchy/${
        enc(
          await createRoom(w, {
            preset: "private_chat",
          }),
        )
      }`,
    );
    assertEquals([hidden.status, hidden.body.errcode], [404, "M_NOT_FOUND"]);
  } finally {
    await w.net.close();
  }
});

Deno.test("federation reads: bad input is a Matrix error with a 4xx status, never a 500", async () => {
  const w = await world();
  try {
    const roomId = await createRoom(w);
    await remoteJoin(w, roomId);
    const eventId = await say(w, roomId, "x");
    const room = enc(roomId);
    const cases: [string, "GET" | "POST", string, JsonValue?][] = [
      ["state without event_id", "GET", `${FED}/state/${room}`],
      ["state_ids without event_id", "GET", `${FED}/state_ids/notaroom`],
      ["state with a bad event_id", "GET", `${FED}/state/${room}?event_id=nope`],
      ["backfill without v", "GET", `${FED}/backfill/${room}?limit=5`],
      ["backfill without limit", "GET", `${FED}/backfill/${room}?v=${enc(eventId)}`],
      ["backfill with a bad limit", "GET", `${FED}/backfill/${room}?v=${enc(eventId)}&limit=-1`],
      ["backfill with a bad room", "GET", `${FED}/backfill/notaroom?v=${enc(eventId)}&limit=1`],
      ["timestamp without dir", "GET", `${FED}/timestamp_to_event/${room}?ts=1`],
      ["timestamp with a bad dir", "GET", `${FED}/timestamp_to_event/${room}?ts=1&dir=x`],
      ["timestamp with a bad ts", "GET", `${FED}/timestamp_to_event/${room}?ts=soon&dir=f`],
      ["missing events with a bad list", "POST", `${FED}/get_missing_events/${room}`, {
        latest_events: "all",
      }],
      ["missing events with bad IDs", "POST", `${FED}/get_missing_events/${room}`, {
        earliest_events: [1],
        latest_events: [],
      }],
      ["event with a bad ID", "GET", `${FED}/event/nope`],
      ["directory without alias", "GET", `${FED}/query/directory`],
      ["directory with a bad alias", "GET", `${FED}/query/directory?room_alias=lobby`],
      ["profile without user", "GET", `${FED}/query/profile`],
      ["profile with a bad user", "GET", `${FED}/query/profile?user_id=alice`],
      ["publicRooms with a bad limit", "GET", `${FED}/publicRooms?limit=many`],
      ["publicRooms with a bad body", "POST", `${FED}/publicRooms`, { limit: "ten" }],
      ["publicRooms with a bad since", "GET", `${FED}/publicRooms?since=xyz`],
      ["hierarchy with a bad flag", "GET", `${FED}/hierarchy/${room}?suggested_only=maybe`],
    ];
    for (const [what, method, path, body] of cases) {
      const res = await fromB(w, method, path, body);
      assertEquals(res.status, 400, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
      assert(typeof res.body.errcode === "string", what);
    }
  } finally {
    await w.net.close();
  }
});
