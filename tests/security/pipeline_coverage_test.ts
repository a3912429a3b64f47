/**
 * Every route that returns room events reads them through the read pipeline
 * (domain/room_events/read_pipeline.ts): history visibility, redaction, ignored users, format,
 * filter. The route list comes from the app itself (`app.routes`), and each route must be
 * classified below, so a new route that nobody classified fails this test. Each event-returning
 * route is then called on a real room with a spying pipeline injected through
 * `assembleServer`'s options: the route must run the pipeline, and every event in its response
 * must be, field for field, one the pipeline put out during that request. A route that formats
 * events itself, or adds events beside the pipeline's, fails.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import {
  type IgnoredUsers,
  ReadPipeline,
  type RoomRead,
  type RoomReadInput,
  type RoomReadResult,
} from "../../domain/room_events/read_pipeline.ts";
import { canonicalJson } from "../../domain/protocol/canonical_json.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { StoredEvent } from "../../domain/ports/event_store.ts";
import type { RoomVersion } from "../../domain/protocol/room_versions.ts";

/**
 * Whether a route returns room events (and so must read them through the pipeline). "server":
 * a federation route whose events go to another server through `ReadPipeline.readForServer`;
 * it takes X-Matrix requests, so tests/federation covers it, not the client calls below.
 */
type Kind = "events" | "none" | "server";

/**
 * Every route of the app, by method and path with the client API version folded to `*`.
 * "events": returns room events (or parts of them, such as state content or member profiles).
 * "none": returns no room event (account data, to-device messages and keys are not room events).
 */
const ROUTES: Record<string, Kind> = {
  "GET /_matrix/client/versions": "none",
  "GET /.well-known/matrix/client": "none",
  "GET /.well-known/matrix/server": "none",
  "GET /_matrix/key/v2/server": "none",
  "GET /_matrix/key/v2/server/:keyId": "none",
  "GET /_matrix/key/v2/query/:serverName": "none",
  "GET /_matrix/key/v2/query/:serverName/:keyId": "none",
  "POST /_matrix/key/v2/query": "none",
  "GET /_matrix/federation/v1/version": "none",
  // Membership handshakes: a template (no event), the state and auth chain of a join and the
  // stripped state of a knock (through readForServer), an invite signed back, a leave (none).
  "GET /_matrix/federation/v1/make_join/:roomId/:userId": "none",
  "GET /_matrix/federation/v1/make_leave/:roomId/:userId": "none",
  "GET /_matrix/federation/v1/make_knock/:roomId/:userId": "none",
  "PUT /_matrix/federation/v1/send_join/:roomId/:eventId": "server",
  "PUT /_matrix/federation/v2/send_join/:roomId/:eventId": "server",
  "PUT /_matrix/federation/v1/send_leave/:roomId/:eventId": "none",
  "PUT /_matrix/federation/v2/send_leave/:roomId/:eventId": "none",
  "PUT /_matrix/federation/v1/send_knock/:roomId/:eventId": "server",
  "PUT /_matrix/federation/v1/invite/:roomId/:eventId": "none",
  "PUT /_matrix/federation/v2/invite/:roomId/:eventId": "none",
  // A transaction's answer is a result per PDU, no event.
  "PUT /_matrix/federation/v1/send/:txnId": "none",
  // Reads served to other servers, through readForServer (tests/federation/event_reads_test.ts).
  "GET /_matrix/federation/v1/event/:eventId": "server",
  "GET /_matrix/federation/v1/state/:roomId": "server",
  "GET /_matrix/federation/v1/state_ids/:roomId": "server",
  "GET /_matrix/federation/v1/event_auth/:roomId/:eventId": "server",
  "GET /_matrix/federation/v1/backfill/:roomId": "server",
  "POST /_matrix/federation/v1/get_missing_events/:roomId": "server",
  "GET /_matrix/federation/v1/timestamp_to_event/:roomId": "none",
  "GET /_matrix/federation/v1/query/directory": "none",
  "GET /_matrix/federation/v1/query/profile": "none",
  "GET /_matrix/federation/v1/publicRooms": "none",
  "POST /_matrix/federation/v1/publicRooms": "none",
  // As the client hierarchy: children's stripped state with redactions, the spec's rules.
  "GET /_matrix/federation/v1/hierarchy/:roomId": "none",
  // Keys and device lists of local users, no room event.
  "POST /_matrix/federation/v1/user/keys/query": "none",
  "POST /_matrix/federation/v1/user/keys/claim": "none",
  "GET /_matrix/federation/v1/user/devices/:userId": "none",
  "GET /health": "none",
  "GET /.well-known/matrix/support": "none",
  "GET /_matrix/client/*/admin/whois/:userId": "none",
  "GET /_matrix/client/*/admin/lock/:userId": "none",
  "PUT /_matrix/client/*/admin/lock/:userId": "none",
  "GET /_matrix/client/*/admin/suspend/:userId": "none",
  "PUT /_matrix/client/*/admin/suspend/:userId": "none",
  "POST /_matrix/client/*/rooms/:roomId/report": "none",
  "POST /_matrix/client/*/rooms/:roomId/report/:eventId": "none",
  "POST /_matrix/client/*/users/:userId/report": "none",
  "GET /_matrix/client/*/thirdparty/protocols": "none",
  "GET /_matrix/client/*/thirdparty/protocol/:protocol": "none",
  "GET /_matrix/client/*/thirdparty/location/:protocol": "none",
  "GET /_matrix/client/*/thirdparty/user/:protocol": "none",
  "GET /_matrix/client/*/thirdparty/location": "none",
  "GET /_matrix/client/*/thirdparty/user": "none",
  "POST /_matrix/client/*/register": "none",
  "GET /_matrix/client/*/register/available": "none",
  "GET /_matrix/client/*/login": "none",
  "POST /_matrix/client/*/login": "none",
  "POST /_matrix/client/*/refresh": "none",
  "POST /_matrix/client/*/logout": "none",
  "POST /_matrix/client/*/logout/all": "none",
  "GET /_matrix/client/*/account/whoami": "none",
  "GET /_matrix/client/*/register/m.login.registration_token/validity": "none",
  "POST /_matrix/client/*/login/get_token": "none",
  "GET /_matrix/client/*/pushrules/": "none",
  "GET /_matrix/client/*/pushrules/global/": "none",
  "GET /_matrix/client/*/pushrules/global/:kind/": "none",
  "GET /_matrix/client/*/pushrules/*": "none",
  "PUT /_matrix/client/*/pushrules/*": "none",
  "DELETE /_matrix/client/*/pushrules/*": "none",
  "GET /_matrix/client/*/pushrules/global/:kind/:ruleId": "none",
  "PUT /_matrix/client/*/pushrules/global/:kind/:ruleId": "none",
  "DELETE /_matrix/client/*/pushrules/global/:kind/:ruleId": "none",
  "GET /_matrix/client/*/pushrules/global/:kind/:ruleId/enabled": "none",
  "PUT /_matrix/client/*/pushrules/global/:kind/:ruleId/enabled": "none",
  "GET /_matrix/client/*/pushrules/global/:kind/:ruleId/actions": "none",
  "PUT /_matrix/client/*/pushrules/global/:kind/:ruleId/actions": "none",
  "GET /_matrix/client/*/notifications": "events",
  "GET /_matrix/client/*/pushers": "none",
  "POST /_matrix/client/*/pushers/set": "none",
  "POST /_matrix/client/*/account/password": "none",
  "POST /_matrix/client/*/account/deactivate": "none",
  "POST /_matrix/client/*/register/email/requestToken": "none",
  "POST /_matrix/client/*/account/3pid/email/requestToken": "none",
  "POST /_matrix/client/*/account/password/email/requestToken": "none",
  "POST /_matrix/client/*/register/msisdn/requestToken": "none",
  "POST /_matrix/client/*/account/3pid/msisdn/requestToken": "none",
  "POST /_matrix/client/*/account/password/msisdn/requestToken": "none",
  "GET /_matrix/client/*/account/3pid": "none",
  "POST /_matrix/client/*/account/3pid": "none",
  "POST /_matrix/client/*/account/3pid/add": "none",
  "POST /_matrix/client/*/account/3pid/bind": "none",
  "POST /_matrix/client/*/account/3pid/unbind": "none",
  "POST /_matrix/client/*/account/3pid/delete": "none",
  "GET /_matrix/client/*/registration/email/submit_token": "none",
  "POST /_matrix/client/*/registration/email/submit_token": "none",
  "GET /_matrix/client/*/add_threepid/email/submit_token": "none",
  "POST /_matrix/client/*/add_threepid/email/submit_token": "none",
  "GET /_matrix/client/*/password_reset/email/submit_token": "none",
  "POST /_matrix/client/*/password_reset/email/submit_token": "none",
  "POST /_matrix/federation/v1/3pid/onbind": "none",
  "GET /_matrix/client/*/devices": "none",
  "GET /_matrix/client/*/devices/:deviceId": "none",
  "PUT /_matrix/client/*/devices/:deviceId": "none",
  "DELETE /_matrix/client/*/devices/:deviceId": "none",
  "POST /_matrix/client/*/delete_devices": "none",
  "GET /_matrix/client/*/sync": "events",
  // Sliding sync (MSC4186): room timelines, required state and invite state, like /sync.
  "POST /_matrix/client/*/sync": "events",
  "POST /_matrix/client/v4/sync": "events",
  "POST /_matrix/client/*/user/:userId/filter": "none",
  "GET /_matrix/client/*/user/:userId/filter/:filterId": "none",
  "POST /_matrix/client/*/createRoom": "none",
  "POST /_matrix/client/*/rooms/:roomId/upgrade": "none",
  "GET /_matrix/client/*/joined_rooms": "none",
  "GET /_matrix/client/*/rooms/:roomId/members": "events",
  "GET /_matrix/client/*/rooms/:roomId/joined_members": "events",
  "PUT /_matrix/client/*/rooms/:roomId/send/:eventType/:txnId": "none",
  "POST /_matrix/client/*/rooms/:roomId/send/:eventType": "none",
  "POST /_matrix/client/*/user/:userId/openid/request_token": "none",
  "GET /_matrix/federation/v1/openid/userinfo": "none",
  "PUT /_matrix/client/*/rooms/:roomId/redact/:eventId/:txnId": "none",
  "PUT /_matrix/client/*/rooms/:roomId/state/:eventType/:stateKey": "none",
  "PUT /_matrix/client/*/rooms/:roomId/state/:eventType/": "none",
  "PUT /_matrix/client/*/rooms/:roomId/state/:eventType": "none",
  "GET /_matrix/client/*/rooms/:roomId/state": "events",
  "GET /_matrix/client/*/rooms/:roomId/state/:eventType/:stateKey": "events",
  "GET /_matrix/client/*/rooms/:roomId/state/:eventType/": "events",
  "GET /_matrix/client/*/rooms/:roomId/state/:eventType": "events",
  "GET /_matrix/client/*/rooms/:roomId/event/:eventId": "events",
  "GET /_matrix/client/*/rooms/:roomId/context/:eventId": "events",
  "GET /_matrix/client/*/rooms/:roomId/messages": "events",
  "GET /_matrix/client/*/rooms/:roomId/relations/:eventId": "events",
  "GET /_matrix/client/*/rooms/:roomId/relations/:eventId/:relType": "events",
  "GET /_matrix/client/*/rooms/:roomId/relations/:eventId/:relType/:eventType": "events",
  "GET /_matrix/client/*/rooms/:roomId/threads": "events",
  // An event ID and timestamp only, chosen among the events the pipeline lets the reader see.
  "GET /_matrix/client/*/rooms/:roomId/timestamp_to_event": "none",
  "POST /_matrix/client/*/join/:roomIdOrAlias": "none",
  "POST /_matrix/client/*/rooms/:roomId/join": "none",
  "POST /_matrix/client/*/knock/:roomIdOrAlias": "none",
  "POST /_matrix/client/*/rooms/:roomId/invite": "none",
  "POST /_matrix/client/*/rooms/:roomId/leave": "none",
  "POST /_matrix/client/*/rooms/:roomId/forget": "none",
  "POST /_matrix/client/*/rooms/:roomId/kick": "none",
  "POST /_matrix/client/*/rooms/:roomId/ban": "none",
  "POST /_matrix/client/*/rooms/:roomId/unban": "none",
  "GET /_matrix/client/*/directory/room/:roomAlias": "none",
  "PUT /_matrix/client/*/directory/room/:roomAlias": "none",
  "DELETE /_matrix/client/*/directory/room/:roomAlias": "none",
  "GET /_matrix/client/*/rooms/:roomId/aliases": "none",
  "GET /_matrix/client/*/directory/list/room/:roomId": "none",
  "PUT /_matrix/client/*/directory/list/room/:roomId": "none",
  "GET /_matrix/client/*/publicRooms": "none",
  "POST /_matrix/client/*/publicRooms": "none",
  "GET /_matrix/client/*/profile/:userId": "none",
  "GET /_matrix/client/*/profile/:userId/:keyName": "none",
  "PUT /_matrix/client/*/profile/:userId/:keyName": "none",
  "DELETE /_matrix/client/*/profile/:userId/:keyName": "none",
  "GET /_matrix/client/*/user/:userId/account_data/:type": "none",
  "PUT /_matrix/client/*/user/:userId/account_data/:type": "none",
  "GET /_matrix/client/*/user/:userId/rooms/:roomId/account_data/:type": "none",
  "PUT /_matrix/client/*/user/:userId/rooms/:roomId/account_data/:type": "none",
  "GET /_matrix/client/*/user/:userId/rooms/:roomId/tags": "none",
  "PUT /_matrix/client/*/user/:userId/rooms/:roomId/tags/:tag": "none",
  "DELETE /_matrix/client/*/user/:userId/rooms/:roomId/tags/:tag": "none",
  "PUT /_matrix/client/*/rooms/:roomId/typing/:userId": "none",
  "POST /_matrix/client/*/rooms/:roomId/receipt/:receiptType/:eventId": "none",
  "POST /_matrix/client/*/rooms/:roomId/read_markers": "none",
  "PUT /_matrix/client/*/presence/:userId/status": "none",
  "GET /_matrix/client/*/presence/:userId/status": "none",
  "GET /_matrix/client/*/capabilities": "none",
  "POST /_matrix/client/*/user_directory/search": "none",
  "GET /_matrix/client/*/voip/turnServer": "none",
  "POST /_matrix/client/*/keys/device_signing/upload": "none",
  "POST /_matrix/client/*/keys/signatures/upload": "none",
  "POST /_matrix/client/*/keys/query": "none",
  "POST /_matrix/client/*/keys/upload": "none",
  "POST /_matrix/client/*/keys/upload/:deviceId": "none",
  "POST /_matrix/client/*/keys/claim": "none",
  "GET /_matrix/client/*/keys/changes": "none",
  "POST /_matrix/client/*/room_keys/version": "none",
  "GET /_matrix/client/*/room_keys/version": "none",
  "GET /_matrix/client/*/room_keys/version/:version": "none",
  "PUT /_matrix/client/*/room_keys/version/:version": "none",
  "DELETE /_matrix/client/*/room_keys/version/:version": "none",
  "PUT /_matrix/client/*/room_keys/keys": "none",
  "PUT /_matrix/client/*/room_keys/keys/:roomId": "none",
  "PUT /_matrix/client/*/room_keys/keys/:roomId/:sessionId": "none",
  "GET /_matrix/client/*/room_keys/keys": "none",
  "GET /_matrix/client/*/room_keys/keys/:roomId": "none",
  "GET /_matrix/client/*/room_keys/keys/:roomId/:sessionId": "none",
  "DELETE /_matrix/client/*/room_keys/keys": "none",
  "DELETE /_matrix/client/*/room_keys/keys/:roomId": "none",
  "DELETE /_matrix/client/*/room_keys/keys/:roomId/:sessionId": "none",
  "PUT /_matrix/client/*/sendToDevice/:eventType/:txnId": "none",
  // MSC3814: the dehydrated device's to-device messages, not room events.
  "GET /_matrix/client/*/dehydrated_device": "none",
  "PUT /_matrix/client/*/dehydrated_device": "none",
  "DELETE /_matrix/client/*/dehydrated_device": "none",
  "GET /_matrix/client/*/dehydrated_device/:deviceId/events": "none",
  "POST /_matrix/client/*/dehydrated_device/:deviceId/events": "none",
  // Legacy sync (deprecated in r0, still in the spec): room events through the pipeline.
  "GET /_matrix/client/*/events": "events",
  "GET /_matrix/client/*/events/:eventId": "events",
  "GET /_matrix/client/*/initialSync": "events",
  "GET /_matrix/client/*/rooms/:roomId/initialSync": "events",
  // Results, their context and the result rooms' state.
  "POST /_matrix/client/*/search": "events",
  // Stripped state of previewable rooms (no event IDs), through ReadPipeline.previewState:
  // redactions apply, history visibility does not (the spec's hierarchy rules decide instead).
  "GET /_matrix/client/*/rooms/:roomId/hierarchy": "none",
  "GET /_matrix/client/*/room_summary/:roomIdOrAlias": "none",
  "GET /_matrix/client/*/summary/:roomIdOrAlias": "none",
  "GET /_matrix/client/*/rooms/:roomIdOrAlias/summary": "none",
  // Room IDs only.
  "GET /_matrix/client/*/mutual_rooms": "none",
  "GET /_matrix/client/*/user/mutual_rooms": "none",
  // The OAuth 2.0 authorization server (issue 14): metadata, clients, tokens and HTML pages
  // about the user's account and sessions, never a room event. The account page shows the
  // display name from the profile, not from member events.
  "GET /_matrix/client/*/auth_metadata": "none",
  "GET /_matrix/client/*/auth_issuer": "none",
  "GET /.well-known/openid-configuration": "none",
  "GET /.well-known/oauth-authorization-server": "none",
  "POST /oauth2/register": "none",
  "GET /oauth2/authorize": "none",
  "POST /oauth2/token": "none",
  "POST /oauth2/revoke": "none",
  "POST /oauth2/device_authorization": "none",
  "GET /oauth2/keys.json": "none",
  "GET /oauth2/userinfo": "none",
  "POST /oauth2/userinfo": "none",
  "GET /account/login": "none",
  "POST /account/login": "none",
  "GET /account/register": "none",
  "POST /account/register": "none",
  "GET /account/logout": "none",
  "POST /account/logout": "none",
  "GET /account/consent/:requestId": "none",
  "POST /account/consent/:requestId": "none",
  "GET /account/link": "none",
  "POST /account/link": "none",
  "GET /account": "none",
  "POST /account": "none",
  // Upstream sign-in and legacy SSO: redirects and a confirmation page.
  "GET /_matrix/client/*/login/sso/redirect": "none",
  "POST /_matrix/client/*/login/sso/redirect": "none",
  "GET /_matrix/client/*/login/sso/redirect/:idpId": "none",
  // Media uploads, downloads and their administration: bytes and mxc URIs, no event (the room
  // quarantine reads the room's events itself and returns a count).
  "POST /_matrix/media/v3/upload": "none",
  "POST /_matrix/media/r0/upload": "none",
  "POST /_matrix/media/v1/upload": "none",
  "POST /_matrix/media/v1/create": "none",
  "PUT /_matrix/media/v3/upload/:serverName/:mediaId": "none",
  "PUT /_matrix/media/r0/upload/:serverName/:mediaId": "none",
  "GET /_matrix/client/*/media/config": "none",
  "GET /_matrix/media/v3/config": "none",
  "GET /_matrix/media/r0/config": "none",
  "GET /_matrix/media/v1/config": "none",
  "GET /_matrix/client/*/media/download/:serverName/:mediaId": "none",
  "GET /_matrix/client/*/media/download/:serverName/:mediaId/:fileName": "none",
  "GET /_matrix/media/v3/download/:serverName/:mediaId": "none",
  "GET /_matrix/media/v3/download/:serverName/:mediaId/:fileName": "none",
  "GET /_matrix/media/r0/download/:serverName/:mediaId": "none",
  "GET /_matrix/media/r0/download/:serverName/:mediaId/:fileName": "none",
  "GET /_matrix/media/v1/download/:serverName/:mediaId": "none",
  "GET /_matrix/media/v1/download/:serverName/:mediaId/:fileName": "none",
  "POST /_synapse/admin/v1/media/quarantine/:serverName/:mediaId": "none",
  // Media bytes, thumbnails of them, and previews of outside web pages: no room event.
  "GET /_matrix/federation/v1/media/download/:mediaId": "none",
  "GET /_matrix/federation/v1/media/thumbnail/:mediaId": "none",
  "GET /_matrix/client/*/media/preview_url": "none",
  "GET /_matrix/media/v3/preview_url": "none",
  "GET /_matrix/media/r0/preview_url": "none",
  "GET /_matrix/media/v1/preview_url": "none",
  "GET /_matrix/client/*/media/thumbnail/:serverName/:mediaId": "none",
  "GET /_matrix/media/v3/thumbnail/:serverName/:mediaId": "none",
  "GET /_matrix/media/r0/thumbnail/:serverName/:mediaId": "none",
  "GET /_matrix/media/v1/thumbnail/:serverName/:mediaId": "none",
  "POST /_synapse/admin/v1/media/unquarantine/:serverName/:mediaId": "none",
  "POST /_synapse/admin/v1/room/:roomId/media/quarantine": "none",
};

/**
 * A route's key in ROUTES: the client API version (v1, v3, r0, unstable, or unstable with an
 * MSC namespace such as `org.matrix.msc2946`, which has a dot) folded to `*`. Stable endpoints
 * are served under bare `unstable/` too, so a first segment without a dot is part of the path.
 */
function routeKey(method: string, path: string): string {
  const folded = path.replace(
    /^\/_matrix\/client\/(?:v1|v3|r0|unstable(?:\/[^/]*\.[^/]*)?)(?=\/)/,
    "/_matrix/client/*",
  );
  return `${method} ${folded}`;
}

/**
 * An event as compared between the pipeline's output and a response: its canonical JSON
 * without `room_id` (/notifications moves that beside the event).
 */
function eventKey(event: unknown): string {
  const { room_id: _, ...rest } = JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
  return canonicalJson(rest);
}

/** A pipeline that records every call and every event it puts out. */
class SpyPipeline extends ReadPipeline {
  calls = 0;
  /** The events put out, as `eventKey`s. */
  readonly outputs = new Set<string>();
  readonly stateKeys = new Set<string>();

  override async readRoom(read: RoomRead, input: RoomReadInput): Promise<RoomReadResult> {
    const result = await super.readRoom(read, input);
    this.calls++;
    for (const event of [...result.timeline, ...result.state]) {
      this.outputs.add(eventKey(event));
      if (typeof event.state_key === "string") this.stateKeys.add(event.state_key);
    }
    return result;
  }

  override async strippedState(
    membership: StoredEvent,
    ignored: IgnoredUsers,
    version: RoomVersion | undefined,
  ): Promise<JsonObject[] | undefined> {
    const result = await super.strippedState(membership, ignored, version);
    this.calls++;
    return result;
  }

  reset(): void {
    this.calls = 0;
    this.outputs.clear();
    this.stateKeys.clear();
  }
}

/**
 * The events (objects with an `event_id` and a `type`) of a response body, outermost first: an
 * event the pipeline put out is `matched` (what it carries, such as `redacted_because`, is the
 * pipeline's too); any other is `bypassed`.
 */
function eventsIn(body: unknown, outputs: ReadonlySet<string>) {
  const matched: string[] = [];
  const bypassed: string[] = [];
  const walk = (value: unknown) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === "object") {
      const o = value as Record<string, unknown>;
      if (typeof o.event_id === "string" && typeof o.type === "string") {
        (outputs.has(eventKey(o)) ? matched : bypassed).push(o.event_id);
        return;
      }
      Object.values(o).forEach(walk);
    }
  };
  walk(body);
  return { matched, bypassed };
}

Deno.test("every registered route is classified as event-returning or not", async () => {
  const server = await startTestServer();
  try {
    const unclassified = new Set<string>();
    const registered = new Set<string>();
    for (const route of server.app.routes) {
      if (route.method === "ALL") continue; // middleware
      const key = routeKey(route.method, route.path);
      registered.add(key);
      if (!(key in ROUTES)) unclassified.add(key);
    }
    assertEquals([...unclassified], [], "classify each new route in ROUTES");
    const gone = Object.keys(ROUTES).filter((key) => !registered.has(key));
    assertEquals(gone, [], "ROUTES lists routes that no longer exist");
  } finally {
    server.close();
  }
});

Deno.test("every event-returning route reads its events through the read pipeline", async () => {
  let spy: SpyPipeline | undefined;
  const server = await startTestServer({}, {
    readPipeline: (deps) => (spy = new SpyPipeline(deps)),
  });
  try {
    assert(spy, "assembleServer built the pipeline through the option");
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const call = (method: string, path: string, token: string, body?: unknown) =>
      server.request(method, path, { token, body });
    const created = await call("POST", "/_matrix/client/v3/createRoom", alice.accessToken, {
      preset: "public_chat",
      name: "Coverage",
    });
    const roomId = created.body.room_id as string;
    const room = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
    await call("POST", `${room}/join`, bob.accessToken, {});
    const sent = await call("PUT", `${room}/send/m.room.message/t1`, bob.accessToken, {
      msgtype: "m.text",
      body: "alice: hello",
      "m.mentions": { user_ids: [alice.userId] },
    });
    const eventId = sent.body.event_id as string;
    // A thread reply, so /relations and /threads have an event to return.
    const reply = await call("PUT", `${room}/send/m.room.message/t2`, alice.accessToken, {
      msgtype: "m.text",
      body: "in thread",
      "m.relates_to": { rel_type: "m.thread", event_id: eventId },
    });
    assertEquals(reply.status, 200);
    // A pending invite, so /sync's invite section is exercised too.
    const other = await call("POST", "/_matrix/client/v3/createRoom", bob.accessToken, {
      preset: "private_chat",
      invite: [alice.userId],
    });
    assertEquals(other.status, 200);

    const fill = (path: string) =>
      path
        .replace(":roomId", encodeURIComponent(roomId))
        .replace(":eventId", encodeURIComponent(eventId))
        .replace(":relType", "m.thread")
        .replace(
          ":eventType",
          path.includes(":stateKey")
            ? "m.room.member"
            : path.includes("/relations/")
            ? "m.room.message"
            : "m.room.name",
        )
        .replace(":stateKey", encodeURIComponent(alice.userId));
    const query: Record<string, string> = {
      "/messages": "?dir=b",
      // The event stream from the beginning (a sync token before every commit), at once.
      "/events": "?from=s00000000000000000000&timeout=0",
      // A short timeline, so the state section holds events too.
      "/sync": `?filter=${
        encodeURIComponent(
          JSON.stringify({ room: { include_leave: true, timeline: { limit: 2 } } }),
        )
      }`,
    };

    const bodies: Record<string, unknown> = {
      // Every room with all its state and a short timeline, so each section is exercised.
      "/sync": {
        lists: {
          all: { ranges: [[0, 9]], required_state: [["*", "*"]], timeline_limit: 2 },
        },
      },
      // Results with context on both sides, profiles and the room's state.
      "/search": {
        search_categories: {
          room_events: {
            search_term: "hello",
            event_context: { before_limit: 2, after_limit: 2, include_profile: true },
            include_state: true,
          },
        },
      },
    };

    const checked: string[] = [];
    for (const route of server.app.routes) {
      if (route.method === "ALL") continue;
      const key = routeKey(route.method, route.path);
      if (ROUTES[key] !== "events") continue;
      const suffix = Object.entries(query).find(([end]) => route.path.endsWith(end))?.[1] ??
        (route.path.includes("/state/") ? "?format=event" : "");
      const path = fill(route.path) + suffix;
      spy.reset();
      const body = route.method === "GET"
        ? undefined
        : Object.entries(bodies).find(([end]) => route.path.endsWith(end))?.[1];
      const res = await call(route.method, path, alice.accessToken, body);
      assertEquals(res.status, 200, `${route.method} ${path}: ${JSON.stringify(res.body)}`);
      assert(spy.calls > 0, `${route.method} ${route.path} did not run the read pipeline`);
      const { matched, bypassed } = eventsIn(res.body, spy.outputs);
      assertEquals(
        bypassed,
        [],
        `${route.method} ${route.path} returned events the pipeline did not put out`,
      );
      if (route.path.endsWith("/joined_members")) {
        for (const userId of Object.keys(res.body.joined)) {
          assert(spy.stateKeys.has(userId), `joined_members: ${userId} bypassed the pipeline`);
        }
      } else if (!route.path.includes("/state/")) {
        assert(matched.length > 0, `${route.method} ${path} returned no event to check`);
      }
      if (route.method === "POST" && route.path.endsWith("/sync")) {
        const entry = res.body.rooms[roomId];
        assert(entry.required_state.length > 0, "sliding sync's required_state was exercised");
        assert(entry.timeline.length > 0, "sliding sync's timeline was exercised");
        const invited = res.body.rooms[other.body.room_id];
        assert(invited?.invite_state?.length > 0, "sliding sync's invite state was exercised");
      } else if (route.path.endsWith("/sync")) {
        const entry = res.body.rooms.join[roomId];
        assert(entry.state.events.length > 0, "sync's state section was exercised");
        assert(res.body.rooms.invite[other.body.room_id], "sync's invite section was exercised");
      }
      checked.push(route.path);
    }
    // Both API versions of each event route were called.
    const expected = server.app.routes.filter((r) =>
      r.method !== "ALL" && ROUTES[routeKey(r.method, r.path)] === "events"
    ).length;
    assertEquals(checked.length, expected);
    assert(checked.length >= 11, "the event-returning routes were found in app.routes");
  } finally {
    server.close();
  }
});
