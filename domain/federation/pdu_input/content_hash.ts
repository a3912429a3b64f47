/**
 * Step 3 of the checks on receipt of a PDU: the content hash. The signatures cover the event
 * as redacted, so a server relaying an event can alter its unprotected content without
 * breaking them; the hash (which the signatures do cover) catches that. Such an event is not
 * dropped: it is redacted, and the redacted copy goes on through the checks and is stored, as
 * the spec asks, so the DAG stays whole while the altered content never reaches anyone.
 */
import type { Pdu } from "../../protocol/events.ts";
import { checkContentHash } from "../../protocol/hashing.ts";
import { redactEvent } from "../../protocol/redaction.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";

/** The PDU to go on with, and whether it had to be redacted. */
export interface ContentHashOutcome {
  pdu: Pdu;
  redacted: boolean;
}

/** Check `pdu`'s content hash; on a mismatch, its redacted copy goes on instead. */
export function applyContentHash(pdu: Pdu, version: RoomVersion): ContentHashOutcome {
  if (checkContentHash(pdu, version)) return { pdu, redacted: false };
  return { pdu: redactEvent(pdu, version), redacted: true };
}
