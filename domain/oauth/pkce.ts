/**
 * PKCE (RFC 7636) as the Matrix OAuth 2.0 API requires it: `S256` only, mandatory for every
 * authorization request, because clients are public and the code verifier is what stands in for
 * a client secret. `plain` would let whoever intercepts the authorization request redeem the code.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../protocol/base64.ts";
import { sameSecret } from "../accounts/uia_stages.ts";
import { OAuthError } from "./oauth_errors.ts";

/** base64url (no padding) of a 32-byte SHA-256: always 43 characters. */
const CHALLENGE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** RFC 7636 §4.1: `code-verifier = 43*128unreserved`. */
const VERIFIER_PATTERN = /^[A-Za-z0-9._~-]{43,128}$/;

/**
 * The code challenge of an authorization request, checked: the method must be `S256` (a missing
 * method means `plain` in RFC 7636 §4.3, so it is refused too) and the challenge 43 base64url
 * characters. Throws OAuthError `invalid_request` saying what is wrong.
 */
export function checkCodeChallenge(method?: string, challenge?: string): string {
  if (challenge === undefined || challenge === "") {
    throw new OAuthError("invalid_request", "code_challenge is required (PKCE with S256)");
  }
  if (method === undefined || method === "") {
    throw new OAuthError(
      "invalid_request",
      "code_challenge_method is required and must be S256 (the default, plain, is not supported)",
    );
  }
  if (method !== "S256") {
    throw new OAuthError(
      "invalid_request",
      `code_challenge_method ${JSON.stringify(method.slice(0, 20))} is not supported: use S256`,
    );
  }
  if (!CHALLENGE_PATTERN.test(challenge)) {
    throw new OAuthError(
      "invalid_request",
      "code_challenge must be the base64url (unpadded) SHA-256 of the verifier: 43 characters",
    );
  }
  return challenge;
}

/**
 * Whether `verifier` (from the token request) hashes to `challenge` (stored with the code). A
 * verifier outside RFC 7636's grammar never verifies. The comparison takes the same time
 * wherever the strings differ.
 */
export function pkceVerifies(verifier: string, challenge: string): boolean {
  if (!VERIFIER_PATTERN.test(verifier)) return false;
  const computed = encodeBase64UrlUnpadded(sha256(new TextEncoder().encode(verifier)));
  return sameSecret(computed, challenge);
}
