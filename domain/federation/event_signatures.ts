/**
 * Which servers must have signed a received event, and whether they did (server-server spec
 * "Validating hashes and signatures on received events"). Pure apart from the injected key ring.
 *
 * The servers that must sign:
 * - the sender's server, except for an invite made from a third-party invite (its sender is
 *   the inviter of the original 3PID invite, but the event may come from another server; the
 *   auth rules check the identity server's `signed` block instead), as Synapse and ruma do;
 * - room versions 1 and 2: the server named in the event ID, which chose it;
 * - room versions with restricted joins (8+): for a join carrying
 *   `join_authorised_via_users_server`, that user's server, which vouched for the join.
 *
 * A server "signed" when at least one of its `ed25519:` signatures verifies with a key the key
 * ring knows and holds valid at the event's `origin_server_ts` (room versions 5+; earlier ones
 * accept any key the server ever published). A signature under a known, valid key that does
 * not verify fails the event, as in Synapse: the server's own key says the bytes were altered.
 * Signatures are over the event redacted under its room version's rules.
 */
import { verifyEventSignature } from "../protocol/event_signing.ts";
import { parseEventId, parseUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import type { KeyRing } from "./key_ring.ts";

/** The outcome of checking an event's signatures; `reason` is for logs and error messages. */
export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/**
 * The servers whose signatures `pdu` needs under `version`, or a reason when the event is too
 * malformed to say (a sender or event ID that is not an ID).
 */
export function requiredSigners(
  pdu: Record<string, unknown>,
  version: RoomVersion,
): { ok: true; servers: string[] } | { ok: false; reason: string } {
  const servers = new Set<string>();
  const sender = typeof pdu.sender === "string" ? parseUserId(pdu.sender) : undefined;
  if (!sender?.ok) return { ok: false, reason: "the event has no valid sender" };
  const content = isJsonObject(pdu.content) ? pdu.content : undefined;
  const membership = pdu.type === "m.room.member" ? content?.membership : undefined;
  const viaThirdPartyInvite = membership === "invite" && content !== undefined &&
    "third_party_invite" in content;
  if (!viaThirdPartyInvite) servers.add(sender.value.serverName);
  if (version.eventIdFormat === "server_chosen") {
    const eventId = typeof pdu.event_id === "string"
      ? parseEventId(pdu.event_id, "server_chosen")
      : undefined;
    if (!eventId?.ok || eventId.value.kind !== "server_chosen") {
      return { ok: false, reason: "the event has no valid event_id" };
    }
    servers.add(eventId.value.serverName);
  }
  if (version.restrictedJoinRule && membership === "join" && content !== undefined) {
    const via = content.join_authorised_via_users_server;
    if (via !== undefined) {
      const authoriser = typeof via === "string" ? parseUserId(via) : undefined;
      if (!authoriser?.ok) {
        return { ok: false, reason: "join_authorised_via_users_server is not a user ID" };
      }
      servers.add(authoriser.value.serverName);
    }
  }
  return { ok: true, servers: [...servers] };
}

/** Check every signature `pdu` needs under `version`'s rules with keys from `keyRing`. */
export async function verifyEventSignatures(
  pdu: Record<string, unknown>,
  version: RoomVersion,
  keyRing: KeyRing,
): Promise<SignatureCheck> {
  const required = requiredSigners(pdu, version);
  if (!required.ok) return required;
  let atTs = 0;
  if (version.enforceKeyValidity) {
    if (typeof pdu.origin_server_ts !== "number") {
      return { ok: false, reason: "the event has no origin_server_ts" };
    }
    atTs = pdu.origin_server_ts;
  }
  const event = pdu as JsonObject & { type: string; content: object };
  const results = await Promise.all(
    required.servers.map((server) => checkServerSignature(event, version, server, atTs, keyRing)),
  );
  return results.find((result) => !result.ok) ?? { ok: true };
}

async function checkServerSignature(
  pdu: JsonObject & { type: string; content: object },
  version: RoomVersion,
  server: string,
  atTs: number,
  keyRing: KeyRing,
): Promise<SignatureCheck> {
  const signatures = isJsonObject(pdu.signatures) ? pdu.signatures[server] : undefined;
  const keyIds = isJsonObject(signatures)
    ? Object.keys(signatures).filter((keyId) => keyId.startsWith("ed25519:"))
    : [];
  if (keyIds.length === 0) return { ok: false, reason: `not signed by ${server}` };
  let verified = false;
  for (const keyId of keyIds) {
    const publicKey = await keyRing.verifyKey(server, keyId, atTs);
    if (publicKey === undefined) continue;
    if (!(await verifyEventSignature(pdu, version, server, keyId, publicKey))) {
      return { ok: false, reason: `${server}'s signature with ${keyId} does not verify` };
    }
    verified = true;
  }
  return verified
    ? { ok: true }
    : { ok: false, reason: `no valid key of ${server} found for its signature` };
}
