/**
 * Membership event templates: the unsigned event a resident server hands out from `make_join`,
 * `make_leave` and `make_knock`, and the signed event the joining (leaving, knocking) server
 * builds from it for `send_join`, `send_leave` and `send_knock`. Both ends of the handshake use
 * this module: the routes serving make_* lay a template out here, and the outbound join, leave
 * and knock (remote_membership.ts, and the remote join) check a template and sign an event from
 * it here. Pure apart from the clock and the signing key.
 */
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { type BuiltEvent, MAX_PDU_BYTES } from "../protocol/event_builder.ts";
import { computeEventId, makeServerChosenEventId } from "../protocol/event_ids.ts";
import { signEvent } from "../protocol/event_signing.ts";
import { type EventReferenceTuple, type Pdu, toRoomEvent } from "../protocol/events.ts";
import { MatrixError, tooLarge } from "../errors.ts";
import { addContentHash } from "../protocol/hashing.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import type { SigningKey } from "../protocol/signing.ts";

/** The memberships a make_/send_ handshake asks for. */
export type HandshakeMembership = "join" | "leave" | "knock";

/** An event a template cites (prev or auth event); v1/v2 cite it with its reference hash. */
export interface TemplateReference {
  eventId: string;
  /** Unpadded base64 reference hash; only v1/v2 rooms cite it. */
  referenceHash?: string;
}

/** What a resident server puts into a make_* template. */
export interface TemplateInput {
  version: RoomVersion;
  roomId: string;
  userId: string;
  membership: HandshakeMembership;
  /** Content besides `membership` (a restricted join's `join_authorised_via_users_server`). */
  content?: JsonObject;
  prevEvents: TemplateReference[];
  depth: number;
  authEvents: TemplateReference[];
  /** The resident server's name (Synapse fills `origin` with its own). */
  origin: string;
  originServerTs: number;
}

/**
 * The unsigned proto-event of a make_* answer (`event` beside `room_version`): no hashes,
 * signatures or (v1/v2) event ID, which the requesting server adds when it signs.
 */
export function membershipTemplate(input: TemplateInput): JsonObject {
  const refs = (list: TemplateReference[]): JsonValue[] =>
    input.version.eventRefsAreTuples
      ? list.map((r): JsonValue => {
        const hash: JsonObject = r.referenceHash ? { sha256: r.referenceHash } : {};
        return [r.eventId, hash];
      })
      : list.map((r) => r.eventId);
  return {
    type: "m.room.member",
    room_id: input.roomId,
    sender: input.userId,
    state_key: input.userId,
    content: { ...input.content, membership: input.membership },
    origin: input.origin,
    origin_server_ts: input.originServerTs,
    depth: input.depth,
    prev_events: refs(input.prevEvents),
    auth_events: refs(input.authEvents),
  };
}

/** A make_* answer checked against what was asked: the room's version and the template. */
export interface CheckedTemplate {
  version: RoomVersion;
  template: JsonObject;
}

/** A resident server's answer we cannot use: 502, nothing was written. */
export function badTemplate(server: string, reason: string): MatrixError {
  return new MatrixError("M_UNKNOWN", 502, `${server} answered with a bad template: ${reason}`);
}

/**
 * Check a make_join/make_leave/make_knock answer from `server`: a supported room version (a
 * missing `room_version` means "1", as servers before v2 rooms answered) and a member event
 * template for `userId` in `roomId` with the asked membership. Throws 400
 * M_UNSUPPORTED_ROOM_VERSION for a version we do not speak, 502 for a malformed template.
 */
export function checkMembershipTemplate(
  server: string,
  body: JsonValue | null,
  expected: { roomId: string; userId: string; membership: HandshakeMembership },
): CheckedTemplate {
  if (!isJsonObject(body)) throw badTemplate(server, "not a JSON object");
  const versionId = body.room_version ?? "1";
  if (typeof versionId !== "string") throw badTemplate(server, "room_version is not a string");
  const version = roomVersion(versionId);
  if (!version) {
    throw new MatrixError(
      "M_UNSUPPORTED_ROOM_VERSION",
      400,
      `Room version ${JSON.stringify(versionId)} of ${expected.roomId} is not supported`,
    );
  }
  const event = body.event;
  if (!isJsonObject(event)) throw badTemplate(server, "no event");
  const content = event.content;
  const checks: [boolean, string][] = [
    [event.type === "m.room.member", "the event is not an m.room.member"],
    [event.room_id === expected.roomId, "the event is for another room"],
    [event.sender === expected.userId, "the event has another sender"],
    [event.state_key === expected.userId, "the event has another state_key"],
    [isJsonObject(content), "the event has no content"],
    [
      isJsonObject(content) && content.membership === expected.membership,
      `the membership is not ${expected.membership}`,
    ],
    [
      typeof event.depth === "number" && Number.isSafeInteger(event.depth) && event.depth > 0,
      "depth is not a positive integer",
    ],
    [validReferences(event.prev_events, version), "prev_events is malformed"],
    [validReferences(event.auth_events, version), "auth_events is malformed"],
  ];
  for (const [ok, reason] of checks) if (!ok) throw badTemplate(server, reason);
  return { version, template: event };
}

function validReferences(value: JsonValue | undefined, version: RoomVersion): boolean {
  if (!Array.isArray(value) || value.length > 64) return false;
  return value.every((r) =>
    version.eventRefsAreTuples
      ? Array.isArray(r) && r.length === 2 && typeof r[0] === "string" && isJsonObject(r[1])
      : typeof r === "string"
  );
}

/** What signing an event from a template takes. */
export interface SignFromTemplateInput {
  version: RoomVersion;
  /** A template that passed `checkMembershipTemplate`. */
  template: JsonObject;
  serverName: string;
  signingKey: SigningKey;
  originServerTs: number;
  /**
   * Content to add (a reason, a display name); the template's `membership` and its
   * `join_authorised_via_users_server` (the resident server chose the authoriser) win.
   */
  content?: JsonObject;
}

/**
 * Build the signed membership event for a send_* from a checked template: the template's room,
 * sender, state key, depth, prev and auth events, our timestamp and origin, a fresh event ID in
 * v1/v2, the content hash and our signature. Throws 413 M_TOO_LARGE past the PDU size limit.
 */
export async function signFromTemplate(input: SignFromTemplateInput): Promise<BuiltEvent> {
  const { version, template } = input;
  const templateContent = template.content as JsonObject;
  const content: JsonObject = { ...input.content, membership: templateContent.membership };
  const via = templateContent.join_authorised_via_users_server;
  if (via !== undefined) content.join_authorised_via_users_server = via;
  const unsigned: Record<string, unknown> = {};
  if (version.eventIdFormat === "server_chosen") {
    unsigned.event_id = makeServerChosenEventId(input.serverName);
  }
  unsigned.room_id = template.room_id;
  unsigned.sender = template.sender;
  unsigned.type = "m.room.member";
  unsigned.state_key = template.state_key;
  unsigned.content = content;
  // Rooms before v11 still carry `origin` in many servers' events; it is harmless to sign.
  if (!version.updatedRedactionRules) unsigned.origin = input.serverName;
  unsigned.origin_server_ts = input.originServerTs;
  unsigned.depth = template.depth;
  unsigned.prev_events = template.prev_events as string[] | EventReferenceTuple[];
  unsigned.auth_events = template.auth_events as string[] | EventReferenceTuple[];
  const hashed = addContentHash(unsigned as unknown as Pdu, version);
  const pdu = await signEvent(
    { ...hashed, signatures: {} },
    version,
    input.serverName,
    input.signingKey,
  );
  const size = canonicalJsonBytes(pdu, { strict: version.strictCanonicalJson }).length;
  if (size > MAX_PDU_BYTES) {
    throw tooLarge(`Event is ${size} bytes of canonical JSON; the limit is ${MAX_PDU_BYTES}`);
  }
  const eventId = computeEventId(pdu, version);
  return { pdu, eventId, event: toRoomEvent(pdu, eventId, version) };
}
