/**
 * Secret tokens handed to clients (access, refresh, login tokens): 32 random bytes, base64url,
 * behind a recognisable prefix so a leaked token is easy to spot in logs and secret scanners.
 * Storage only ever sees their SHA-256 hash.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../protocol/base64.ts";

/** Kinds of token, each with its own prefix. */
export const TOKEN_PREFIXES = Object.freeze({
  access: "tsr_at_",
  refresh: "tsr_rt_",
  login: "tsr_lt_",
});

/** A fresh random token of one kind. */
export function newToken(kind: keyof typeof TOKEN_PREFIXES): string {
  return TOKEN_PREFIXES[kind] + randomId(32);
}

/** The storage form of a token: base64url of its SHA-256. */
export function tokenHash(token: string): string {
  return encodeBase64UrlUnpadded(sha256(new TextEncoder().encode(token)));
}

/** `bytes` random bytes as base64url (IDs for sessions and tokens). */
export function randomId(bytes: number): string {
  return encodeBase64UrlUnpadded(crypto.getRandomValues(new Uint8Array(bytes)));
}

const DEVICE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** A server-chosen device ID: ten capital letters, as other servers do, about 47 bits. */
export function newDeviceId(): string {
  return randomFrom(DEVICE_ID_ALPHABET, 10);
}

/** A server-chosen localpart for registrations without a username. */
export function newLocalpart(): string {
  return "u" + randomFrom("abcdefghijklmnopqrstuvwxyz0123456789", 11);
}

function randomFrom(alphabet: string, length: number): string {
  // 256 is not a multiple of 26 or 36; rejecting high bytes keeps the choice uniform.
  const limit = 256 - (256 % alphabet.length);
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      if (byte < limit && out.length < length) out += alphabet[byte % alphabet.length];
    }
  }
  return out;
}
