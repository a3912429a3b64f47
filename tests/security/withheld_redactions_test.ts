/**
 * Redaction events the read pipeline withholds (domain/room_events/applied_redactions.ts), on one
 * in-process server whose store holds events of a remote user as federation would append them
 * (`checkState`): a redaction that does not take effect (another server's user without the
 * redact level, a create event, an event we do not hold, a rejected event) neither redacts nor
 * shows in any client read: /messages, /event, /context, /sync, legacy /initialSync and
 * /events, bundled thread summaries, search; nor does it take its target out of relation counts.
 * Room versions 10 (top-level `redacts`) and 12 (`redacts` in content).
 */
import { assert, assertEquals } from "../assert.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import { RemoteView } from "../federation/remote_view.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../domain/protocol/signing.ts";
import type { BuiltEvent } from "../../domain/protocol/event_builder.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const V3 = "/_matrix/client/v3";
const REMOTE = "evil.test";
const MALLORY = `@mallory:${REMOTE}`;
const enc = encodeURIComponent;

async function ok(
  server: Server,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await server.request(method, `${V3}${path}`, { token: user.accessToken, body });
  if (res.status !== 200) {
    throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body;
}

/** Alice's room on a fresh server, Mallory of evil.test joined as federation would append her. */
async function setup(version: string) {
  const server = await startTestServer({}, FAST_HASHING);
  const alice = await registerUser(server, "alice");
  const roomId = (await ok(server, alice, "POST", "/createRoom", {
    preset: "public_chat",
    room_version: version,
  })).room_id as string;
  const store = server.deps.eventStore;
  const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:1");
  const view = new RemoteView(roomId, roomVersion(version)!, REMOTE, key);
  /** Append Mallory's event on top of the room's single extremity, checked as /send would. */
  const append = async (event: BuiltEvent, expected = "accepted") => {
    const { events: [done] } = await store.append({
      roomId,
      events: [{ eventId: event.eventId, pdu: event.pdu, status: "accepted", checkState: true }],
    });
    assertEquals(done.status, expected, `${event.pdu.type} ${event.eventId}`);
    return event.eventId;
  };
  const build = async (
    event: { sender: string; type: string; stateKey?: string; content: JsonObject },
  ) => {
    await view.syncFrom(store);
    const tip = (await store.roomHead(roomId))!.forwardExtremities[0];
    return await view.build(tip, event);
  };
  const redaction = (redacts: string) => {
    const content: JsonObject = { reason: "mine" };
    if (roomVersion(version)!.redactsInContent) content.redacts = redacts;
    return build({ sender: MALLORY, type: "m.room.redaction", content, redacts } as never);
  };
  await append(
    await build({
      sender: MALLORY,
      type: "m.room.member",
      stateKey: MALLORY,
      content: { membership: "join" },
    }),
  );
  const say = async (body: string, relatesTo?: JsonObject) =>
    (await ok(
      server,
      alice,
      "PUT",
      `/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
      {
        msgtype: "m.text",
        body,
        ...(relatesTo ? { "m.relates_to": relatesTo } : {}),
      },
    )).event_id as string;
  return { server, alice, roomId, store, build, append, redaction, say };
}

/** Every event ID anywhere in a response. */
function idsIn(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => idsIn(v, out));
  else if (value && typeof value === "object") {
    const o = value as Record<string, unknown>;
    if (typeof o.event_id === "string") out.add(o.event_id);
    Object.values(o).forEach((v) => idsIn(v, out));
  }
  return out;
}

for (const version of ["10", "12"]) {
  Deno.test(`withheld redactions (v${version}): another server's user without the redact level, a create event, an unknown event`, async () => {
    const { server, alice, roomId, store, build, append, redaction, say } = await setup(version);
    try {
      // Where the legacy event stream starts: before everything below.
      const from = (await ok(server, alice, "GET", "/initialSync?limit=1")).end as string;
      const root = await say("thread root");
      const reply = await say("reply words", { rel_type: "m.thread", event_id: root });
      const createId = (await store.currentStateEventId(roomId, "m.room.create", ""))!;
      const unknown = `$${"x".repeat(43)}`;
      const forbidden = await append(await redaction(reply));
      const ofCreate = await append(await redaction(createId));
      const ofUnknown = await append(await redaction(unknown));
      // Mallory's own event, rejected (she may not make herself an admin), then redacted.
      const escalation = await append(
        await build({
          sender: MALLORY,
          type: "m.room.power_levels",
          stateKey: "",
          content: { users: { [MALLORY]: 100 } },
        }),
        "rejected",
      );
      const ofRejected = await append(await redaction(escalation));
      const withheld = [forbidden, ofCreate, ofUnknown, ofRejected];
      // Her own message she may redact: that one applies, and shows.
      const hers = await append(
        await build({
          sender: MALLORY,
          type: "m.room.message",
          content: { msgtype: "m.text", body: "mallory's words" },
        }),
      );
      const ofHers = await append(await redaction(hers));

      const reads: [string, unknown][] = [
        [
          "/messages",
          await ok(server, alice, "GET", `/rooms/${enc(roomId)}/messages?dir=b&limit=50`),
        ],
        ["/sync", await ok(server, alice, "GET", "/sync")],
        ["/initialSync", await ok(server, alice, "GET", "/initialSync?limit=50")],
        ["/events", await ok(server, alice, "GET", `/events?timeout=0&from=${enc(from)}`)],
      ];
      for (const [name, body] of reads) {
        const ids = idsIn(body);
        for (const id of withheld) assert(!ids.has(id), `${id} withheld from ${name}`);
      }
      for (const id of withheld) {
        const event = await server.request("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(id)}`, {
          token: alice.accessToken,
        });
        assertEquals(event.status, 404, `${id} withheld from /event`);
        const context = await server.request(
          "GET",
          `${V3}/rooms/${enc(roomId)}/context/${enc(id)}`,
          {
            token: alice.accessToken,
          },
        );
        assertEquals(context.status, 404, `${id} withheld from /context`);
      }
      // Nothing redacted: the reply, its thread's count, search, the create event's content.
      const replyEvent = await ok(
        server,
        alice,
        "GET",
        `/rooms/${enc(roomId)}/event/${enc(reply)}`,
      );
      assertEquals(replyEvent.content.body, "reply words");
      assertEquals(replyEvent.unsigned.redacted_because, undefined);
      const rootEvent = await ok(server, alice, "GET", `/rooms/${enc(roomId)}/event/${enc(root)}`);
      assertEquals(rootEvent.unsigned["m.relations"]["m.thread"].count, 1);
      const search = await ok(server, alice, "POST", "/search", {
        search_categories: { room_events: { search_term: "words" } },
      });
      assertEquals(
        search.search_categories.room_events.results.map((r: { result: JsonObject }) =>
          r.result.event_id
        ),
        [reply],
      );
      const create = await ok(server, alice, "GET", `/rooms/${enc(roomId)}/state/m.room.create/`);
      assertEquals(create.room_version, version);
      // The valid one: shown, and its target redacted with redacted_by.
      const hersEvent = await ok(server, alice, "GET", `/rooms/${enc(roomId)}/event/${enc(hers)}`);
      assertEquals(hersEvent.content, {});
      assertEquals(hersEvent.unsigned.redacted_by, ofHers);
      assertEquals(hersEvent.unsigned.redacted_because.event_id, ofHers);
      for (const [name, body] of reads) assert(idsIn(body).has(ofHers), `${ofHers} in ${name}`);
    } finally {
      server.close();
    }
  });
}
