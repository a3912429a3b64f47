/**
 * The auth rule for invites that redeem a third-party (identity server) invite: the `signed`
 * block must name the target, match an m.room.third_party_invite event from the same sender,
 * and carry a signature by one of that event's public keys.
 */
import {
  ALLOWED,
  type AuthContext,
  type AuthDecision,
  deny,
  membershipOf,
  type ThirdPartyInviteVerifier,
} from "./auth_context.ts";
import { stateKey } from "./events.ts";
import { isJsonObject, type JsonObject } from "./json.ts";
import { tryDecodeBase64 } from "./base64.ts";
import { verifyJsonSignatureSync } from "./signing.ts";

/**
 * The default verifier: Ed25519 over the canonical JSON of `signed` (without `signatures` and
 * `unsigned`), strict canonical JSON from v6 as for every other signature in the room.
 */
export const verifyThirdPartyInviteEd25519: ThirdPartyInviteVerifier = (
  signed,
  serverName,
  keyId,
  publicKey,
  version,
) => {
  const key = tryDecodeBase64(publicKey);
  if (key === undefined) return false;
  return verifyJsonSignatureSync(signed, serverName, keyId, key, {
    strict: version.strictCanonicalJson,
  });
};

/** The public keys an m.room.third_party_invite event offers: `public_key` and `public_keys`. */
export function thirdPartyInvitePublicKeys(content: JsonObject): string[] {
  const keys: string[] = [];
  if (typeof content.public_key === "string") keys.push(content.public_key);
  if (Array.isArray(content.public_keys)) {
    for (const entry of content.public_keys) {
      if (isJsonObject(entry) && typeof entry.public_key === "string") keys.push(entry.public_key);
    }
  }
  return keys;
}

/** Rule "invite with third_party_invite": everything here decides the event on its own. */
export function checkThirdPartyInvite(
  ctx: AuthContext,
  target: string,
  thirdPartyInvite: unknown,
): AuthDecision {
  const { event, authState, version } = ctx;
  if (membershipOf(authState, target) === "ban") return deny("target user is banned from the room");
  if (!isJsonObject(thirdPartyInvite) || !isJsonObject(thirdPartyInvite.signed)) {
    return deny("third_party_invite has no signed object");
  }
  const signed = thirdPartyInvite.signed;
  if (!Object.hasOwn(signed, "mxid") || !Object.hasOwn(signed, "token")) {
    return deny("third_party_invite.signed lacks mxid or token");
  }
  if (signed.mxid !== target) return deny("third_party_invite mxid does not match the state_key");
  const token = signed.token;
  const invite = typeof token === "string"
    ? authState(stateKey("m.room.third_party_invite", token))
    : undefined;
  if (invite === undefined) return deny("no m.room.third_party_invite event matches the token");
  if (invite.sender !== event.sender) {
    return deny("sender did not send the matching m.room.third_party_invite event");
  }
  const verify = ctx.options.verifyThirdPartyInviteSignature ?? verifyThirdPartyInviteEd25519;
  const publicKeys = thirdPartyInvitePublicKeys(invite.content);
  const signatures = signed.signatures;
  if (isJsonObject(signatures)) {
    for (const serverName in signatures) {
      const byKey = signatures[serverName];
      if (!isJsonObject(byKey)) continue;
      for (const keyId in byKey) {
        // Identity server keys are Ed25519; a signature under another algorithm cannot match.
        if (!keyId.startsWith("ed25519:") || typeof byKey[keyId] !== "string") continue;
        for (const publicKey of publicKeys) {
          if (verify(signed, serverName, keyId, publicKey, version)) return ALLOWED;
        }
      }
    }
  }
  return deny("no signature in third_party_invite.signed matches the invite's public keys");
}
