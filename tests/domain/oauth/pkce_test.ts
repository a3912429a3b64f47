/** PKCE (RFC 7636) as the Matrix OAuth 2.0 API requires it: S256 only, strict grammar. */
import assert from "node:assert/strict";
import { checkCodeChallenge, pkceVerifies } from "../../../domain/oauth/pkce.ts";
import { OAuthError } from "../../../domain/oauth/oauth_errors.ts";

// RFC 7636 Appendix B.
const RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

function refusal(fn: () => unknown): OAuthError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof OAuthError);
    return error;
  }
  assert.fail("not refused");
}

Deno.test("RFC 7636 appendix B: the verifier hashes to the challenge", () => {
  assert.equal(checkCodeChallenge("S256", RFC_CHALLENGE), RFC_CHALLENGE);
  assert.equal(pkceVerifies(RFC_VERIFIER, RFC_CHALLENGE), true);
});

Deno.test("a missing challenge, a missing method and plain are refused", () => {
  for (
    const [method, challenge, pattern] of [
      ["S256", undefined, /code_challenge is required/],
      ["S256", "", /code_challenge is required/],
      [undefined, RFC_CHALLENGE, /code_challenge_method is required/],
      ["", RFC_CHALLENGE, /code_challenge_method is required/],
      ["plain", RFC_CHALLENGE, /"plain" is not supported/],
      ["s256", RFC_CHALLENGE, /not supported/],
      ["S512", RFC_CHALLENGE, /not supported/],
    ] as const
  ) {
    const error = refusal(() => checkCodeChallenge(method, challenge));
    assert.equal(error.error, "invalid_request");
    assert.equal(error.status, 400);
    assert.match(error.description, pattern);
  }
});

Deno.test("a challenge that is not a base64url SHA-256 is refused", () => {
  for (
    const challenge of [
      RFC_CHALLENGE.slice(0, 42),
      RFC_CHALLENGE + "A",
      RFC_CHALLENGE + "=",
      // A plain verifier sent as the challenge: 43 characters, but `.` and `~` are not base64url.
      "a.b~" + RFC_CHALLENGE.slice(4),
      RFC_CHALLENGE.replace("-", "+"),
      RFC_CHALLENGE.replace("w", "/"),
    ]
  ) {
    const error = refusal(() => checkCodeChallenge("S256", challenge));
    assert.equal(error.error, "invalid_request");
    assert.match(error.description, /43 characters/);
  }
});

Deno.test("downgrades and wrong verifiers do not verify", () => {
  // The challenge itself presented as the verifier (a plain-method downgrade).
  assert.equal(pkceVerifies(RFC_CHALLENGE, RFC_CHALLENGE), false);
  // A verifier of another challenge.
  assert.equal(pkceVerifies("a".repeat(43), RFC_CHALLENGE), false);
  // One character off.
  assert.equal(pkceVerifies(RFC_VERIFIER.slice(0, -1) + "Y", RFC_CHALLENGE), false);
  assert.equal(pkceVerifies("", RFC_CHALLENGE), false);
});

Deno.test("verifiers outside RFC 7636's grammar never verify, even when they hash right", async () => {
  const hashOf = async (verifier: string) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)))
      .toBase64({ alphabet: "base64url", omitPadding: true });
  for (
    const verifier of [
      "a".repeat(42), // too short
      "a".repeat(129), // too long
      "a".repeat(42) + "+", // outside the unreserved set
      "a".repeat(42) + " ",
      "a".repeat(42) + "é",
    ]
  ) {
    assert.equal(pkceVerifies(verifier, await hashOf(verifier)), false, verifier);
  }
  // The bounds themselves are fine.
  for (const verifier of ["a".repeat(43), "Z".repeat(128), "0123456789._~-".repeat(4)]) {
    assert.equal(pkceVerifies(verifier, await hashOf(verifier)), true, verifier);
  }
});
