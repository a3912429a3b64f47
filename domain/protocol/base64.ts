/**
 * Base64 as Matrix uses it: unpadded on output, lenient on input (padded or not, standard or
 * URL-safe alphabet), and tolerant of non-zero trailing bits, because Python's decoder (Synapse,
 * signedjson) accepts them and keys such as the spec's own test seed rely on that.
 */
import { badJson } from "../errors.ts";

// Either alphabet, then at most two padding characters; anything else is not base64.
const BASE64_SHAPE = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Unpadded standard base64 (RFC 4648 section 4 without `=`): hashes, signatures, keys. */
export function encodeBase64Unpadded(bytes: Uint8Array): string {
  return bytes.toBase64({ omitPadding: true });
}

/** Unpadded URL-safe base64 (RFC 4648 section 5 without `=`): event IDs from room v4. */
export function encodeBase64UrlUnpadded(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * Decode base64 in either alphabet, with or without padding. Throws M_BAD_JSON on characters
 * outside the alphabets, misplaced padding, or an impossible length.
 */
export function decodeBase64(text: string): Uint8Array {
  if (!BASE64_SHAPE.test(text)) {
    const bad = [...text].find((c) => !/[A-Za-z0-9+/_=-]/.test(c));
    if (bad === undefined) throw badJson("Invalid base64: misplaced padding");
    throw badJson(`Invalid base64: unexpected character ${JSON.stringify(bad)}`);
  }
  const body = text.replace(/=+$/, "");
  const padding = text.length - body.length;
  if (body.length % 4 === 1) {
    throw badJson("Invalid base64: length leaves a single dangling character");
  }
  if (padding > 0 && (body.length + padding) % 4 !== 0) {
    throw badJson("Invalid base64: wrong amount of padding");
  }
  // The native decoder takes one alphabet; mapping URL-safe to standard lets both through.
  // "loose" ignores non-zero bits in the last character, as Python's b64decode does.
  const standard = body.replaceAll("-", "+").replaceAll("_", "/");
  return Uint8Array.fromBase64(standard, { lastChunkHandling: "loose" });
}

/** Like `decodeBase64`, but undefined instead of an error: for checks that simply fail. */
export function tryDecodeBase64(text: string): Uint8Array | undefined {
  try {
    return decodeBase64(text);
  } catch {
    return undefined;
  }
}
