/**
 * The X-Matrix request signature (Server-Server API, "Request Authentication"): the origin
 * signs `{method, uri, origin, destination, content?}` with its server key and sends the
 * signature in `Authorization: X-Matrix origin=...,destination=...,key=...,sig=...`. Pure:
 * signing takes the key, verification takes the public key the caller looked up.
 */
import {
  type Signatures,
  type SigningKey,
  signJson,
  verifyJsonSignature,
} from "../protocol/signing.ts";
import type { JsonObject, JsonValue } from "../protocol/json.ts";

/**
 * Request bodies may carry what room v6+ events may not (floats, integers past 2^53): the
 * signature covers them all the same, and the route, not request authentication, refuses them
 * with 400 M_BAD_JSON (as Synapse does, and SyTest's "invalid JSON" tests expect).
 */
const LENIENT = { strict: false } as const;

/** The request fields a signature covers; `uri` is the path with its query, as sent. */
export interface SignedRequestFields {
  readonly method: string;
  readonly uri: string;
  readonly origin: string;
  readonly destination: string;
  /** The parsed JSON body; absent for requests without one. */
  readonly content?: JsonValue;
}

/** The parameters of one X-Matrix Authorization header. */
export interface XMatrixAuthorization {
  readonly origin: string;
  /** Absent in headers of servers older than spec v1.3; then the receiver assumes itself. */
  readonly destination?: string;
  /** The key ID, such as `ed25519:abc`. */
  readonly key: string;
  /** The unpadded base64 signature. */
  readonly sig: string;
}

/** The JSON object the origin signs for a request. */
export function requestSigningObject(fields: SignedRequestFields): JsonObject {
  const object: JsonObject = {
    method: fields.method.toUpperCase(),
    uri: fields.uri,
    origin: fields.origin,
    destination: fields.destination,
  };
  if (fields.content !== undefined) object.content = fields.content;
  return object;
}

/** Sign a request as `fields.origin` and return the full `Authorization` header value. */
export async function signRequest(
  fields: SignedRequestFields,
  key: SigningKey,
): Promise<string> {
  const signed = await signJson(requestSigningObject(fields), fields.origin, key, LENIENT);
  const sig = (signed.signatures as Signatures)[fields.origin][key.keyId];
  return formatXMatrix({
    origin: fields.origin,
    destination: fields.destination,
    key: key.keyId,
    sig,
  });
}

/** Quote a parameter value, escaping `"` and `\` as RFC 9110 quoted-string asks. */
function quoted(value: string): string {
  return `"${value.replaceAll(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Render the header value; every value quoted, which every receiver accepts. */
export function formatXMatrix(auth: XMatrixAuthorization): string {
  const params = [`origin=${quoted(auth.origin)}`];
  if (auth.destination !== undefined) params.push(`destination=${quoted(auth.destination)}`);
  params.push(`key=${quoted(auth.key)}`, `sig=${quoted(auth.sig)}`);
  return `X-Matrix ${params.join(",")}`;
}

// RFC 9110 token characters (section 5.6.2).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parse an `Authorization` header in the X-Matrix scheme (RFC 9110 section 11.4): the scheme
 * case-insensitive, parameter names case-insensitive in any order, values a token or a quoted
 * string with backslash escapes, optional spaces and tabs around commas. Null when the header is
 * another scheme, malformed, repeats a parameter, or lacks origin, key or sig.
 */
export function parseXMatrix(header: string): XMatrixAuthorization | null {
  const match = /^\s*([^\s]+)[ \t]+(.*)$/s.exec(header);
  if (match === null || match[1].toLowerCase() !== "x-matrix") return null;
  const text = match[2];
  const params = new Map<string, string>();
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t")) i++;
  };
  while (true) {
    skipSpace();
    const nameStart = i;
    while (i < text.length && text[i] !== "=" && text[i] !== "," && text[i] !== " ") i++;
    const name = text.slice(nameStart, i).toLowerCase();
    if (!TOKEN.test(name)) return null;
    skipSpace();
    if (text[i] !== "=") return null;
    i++;
    skipSpace();
    let value: string;
    if (text[i] === '"') {
      i++;
      let out = "";
      let closed = false;
      while (i < text.length) {
        const ch = text[i];
        if (ch === "\\") {
          if (i + 1 >= text.length) return null;
          out += text[i + 1];
          i += 2;
        } else if (ch === '"') {
          i++;
          closed = true;
          break;
        } else {
          out += ch;
          i++;
        }
      }
      if (!closed) return null;
      value = out;
    } else {
      const start = i;
      while (i < text.length && text[i] !== "," && text[i] !== " " && text[i] !== "\t") i++;
      value = text.slice(start, i);
      if (!TOKEN.test(value)) return null;
    }
    if (params.has(name)) return null;
    params.set(name, value);
    skipSpace();
    if (i >= text.length) break;
    if (text[i] !== ",") return null;
    i++;
  }
  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (!origin || !key || !sig) return null;
  const destination = params.get("destination");
  return { origin, key, sig, ...(destination !== undefined ? { destination } : {}) };
}

/**
 * Check a parsed header's signature over the request, with the origin's public key for
 * `auth.key`. `destination` is the receiving server's own name (the header's, when present,
 * must already have been checked against it).
 */
export function verifyRequestSignature(
  auth: XMatrixAuthorization,
  request: { method: string; uri: string; destination: string; content?: JsonValue },
  publicKey: Uint8Array,
): Promise<boolean> {
  const object = requestSigningObject({
    method: request.method,
    uri: request.uri,
    origin: auth.origin,
    destination: request.destination,
    ...(request.content !== undefined ? { content: request.content } : {}),
  });
  object.signatures = { [auth.origin]: { [auth.key]: auth.sig } };
  return verifyJsonSignature(object, auth.origin, auth.key, publicKey, LENIENT);
}
