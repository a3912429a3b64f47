/**
 * Step 2 of the checks on receipt of a PDU: the signatures of every server that must sign it
 * (part of the federation key work: `verifyEventSignatures`). A PDU failing here is dropped,
 * never stored: nobody can be held to an event they did not sign.
 */
import type { Pdu } from "../../protocol/events.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";
import { type SignatureCheck, verifyEventSignatures } from "../event_signatures.ts";
import type { KeyRing } from "../key_ring.ts";

/** The signature check, injectable so the steps can be tested without keys. */
export type SignatureVerifier = (pdu: Pdu, version: RoomVersion) => Promise<SignatureCheck>;

/** The real check: every required server's signature against keys from `keyRing`. */
export function keyRingVerifier(keyRing: KeyRing): SignatureVerifier {
  return (pdu, version) => verifyEventSignatures(pdu, version, keyRing);
}

/**
 * Check `pdu`'s signatures. A key ring that cannot reach a signer's server (its keys unknown)
 * is a failed check, not an error of ours: the sender may retry once the keys can be fetched.
 */
export async function checkSignatures(
  pdu: Pdu,
  version: RoomVersion,
  verify: SignatureVerifier,
): Promise<SignatureCheck> {
  try {
    return await verify(pdu, version);
  } catch (error) {
    return { ok: false, reason: `signing keys could not be fetched: ${(error as Error).message}` };
  }
}
