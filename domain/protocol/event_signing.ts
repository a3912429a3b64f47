/**
 * Signatures on events (server-server spec "Signing events"): the signature covers the event as
 * redacted under its room version's rules, so it still verifies after a redaction; the content
 * hash, kept by redaction, is what ties the signature to the full content.
 */
import { encodeBase64Unpadded } from "./base64.ts";
import { type RedactableEvent, redactEvent } from "./redaction.ts";
import type { RoomVersion } from "./room_versions.ts";
import {
  type Signatures,
  signingBytes,
  type SigningKey,
  verifyJsonSignature,
  verifyJsonSignatureSync,
} from "./signing.ts";

function canonicalOptions(version: RoomVersion) {
  return { strict: version.strictCanonicalJson };
}

/**
 * A copy of `pdu` signed by `serverName` over its redacted form. Add the content hash first:
 * the signature covers `hashes`.
 */
export async function signEvent<T extends RedactableEvent>(
  pdu: T,
  version: RoomVersion,
  serverName: string,
  key: SigningKey,
): Promise<T> {
  const bytes = signingBytes(redactEvent(pdu, version), canonicalOptions(version));
  const signature = encodeBase64Unpadded(await key.sign(bytes));
  const existing = (pdu as { signatures?: Signatures }).signatures ?? {};
  return {
    ...pdu,
    signatures: {
      ...existing,
      [serverName]: { ...existing[serverName], [key.keyId]: signature },
    },
  };
}

/** Check `serverName`'s signature with `keyId` on an event (over its redacted form). */
export function verifyEventSignature(
  pdu: RedactableEvent,
  version: RoomVersion,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array,
): Promise<boolean> {
  return verifyJsonSignature(
    redactEvent(pdu, version),
    serverName,
    keyId,
    publicKey,
    canonicalOptions(version),
  );
}

/** The synchronous twin of `verifyEventSignature`. */
export function verifyEventSignatureSync(
  pdu: RedactableEvent,
  version: RoomVersion,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array,
): boolean {
  return verifyJsonSignatureSync(
    redactEvent(pdu, version),
    serverName,
    keyId,
    publicKey,
    canonicalOptions(version),
  );
}
