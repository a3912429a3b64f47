/**
 * Matrix identifiers (spec appendix "Identifier Grammar"): server names, user IDs, room IDs and
 * aliases, event IDs, key IDs, device IDs and opaque IDs. Parsers return a result with a reason
 * instead of throwing, so callers choose the errcode; `requireValid` gives routes M_INVALID_PARAM.
 */
import { invalidParam } from "../errors.ts";
import type { EventIdFormat } from "./room_versions.ts";

/** A parse outcome: the value, or a one-line human-readable reason it was rejected. */
export type IdResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Which of the three server-name host forms was used. */
export type HostKind = "dns" | "ipv4" | "ipv6";

/** A parsed server name; `host` is the bare address (IPv6 without brackets). */
export interface ServerName {
  readonly host: string;
  readonly port?: number;
  readonly kind: HostKind;
}

/** A parsed user ID; `historical` is true when the localpart only fits the lenient grammar. */
export interface UserId {
  readonly localpart: string;
  readonly serverName: string;
  readonly server: ServerName;
  readonly historical: boolean;
}

/** A room ID: `!opaque:server` (v1-11) or, from v12, `!` + the create event's reference hash. */
export type RoomId =
  | { readonly kind: "server"; readonly opaque: string; readonly serverName: string }
  | { readonly kind: "hash"; readonly hash: string };

/** A room alias `#alias:server`. */
export interface RoomAlias {
  readonly alias: string;
  readonly serverName: string;
}

/** An event ID: `$opaque:server` (v1/v2) or `$` + a 43-character reference hash (v3+). */
export type EventId =
  | { readonly kind: "server_chosen"; readonly opaque: string; readonly serverName: string }
  | { readonly kind: "reference_hash"; readonly hash: string };

/** A key ID `algorithm:version`, e.g. `ed25519:abc_`. */
export interface KeyId {
  readonly algorithm: string;
  readonly version: string;
}

/** The spec caps user IDs, room IDs, aliases, event IDs and server names at 255 (bytes). */
export const MAX_ID_BYTES = 255;

const encoder = new TextEncoder();
const byteLength = (s: string): number => encoder.encode(s).length;

/** Quote untrusted input for a reason, cut short so a huge value cannot flood logs or errors. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

const ok = <T>(value: T): IdResult<T> => ({ ok: true, value });
const fail = <T>(reason: string): IdResult<T> => ({ ok: false, reason });

/** Throw M_INVALID_PARAM (400) carrying the reason when the result is a failure. */
export function requireValid<T>(result: IdResult<T>): T {
  if (!result.ok) throw invalidParam(result.reason);
  return result.value;
}

// --- Server names -------------------------------------------------------------------------

const DNS_NAME = /^[A-Za-z0-9.-]+$/;
const IPV4_SHAPE = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

function isIpv4(s: string): boolean {
  return IPV4_SHAPE.test(s) && s.split(".").every((octet) => Number(octet) <= 255);
}

/** Whether `s` is an IPv6 address (no brackets, no zone), including an embedded IPv4 tail. */
export function isIpv6Address(s: string): boolean {
  if (s.length < 2 || s.length > 45) return false;
  let text = s;
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    // An IPv4 tail fills the last two 16-bit groups.
    if (lastColon < 0 || !isIpv4(tail)) return false;
    text = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = halves.flatMap((half) => (half === "" ? [] : half.split(":")));
  // Empty groups left by a stray single ':' (":1::2", "1:::2") fail the hex test.
  if (!groups.every((g) => HEX_GROUP.test(g))) return false;
  return halves.length === 2 ? groups.length <= 7 : groups.length === 8;
}

/** Parse a bare host: IPv4 literal, IPv6 literal (bracketed in server names) or DNS name. */
function parseHost(host: string, bracketed: boolean): IdResult<{ host: string; kind: HostKind }> {
  if (bracketed) {
    return isIpv6Address(host)
      ? ok({ host, kind: "ipv6" })
      : fail(`${quote(`[${host}]`)} is not a valid IPv6 literal`);
  }
  if (host === "") return fail("host is empty");
  if (IPV4_SHAPE.test(host)) {
    return isIpv4(host)
      ? ok({ host, kind: "ipv4" })
      : fail(`${quote(host)} is not a valid IPv4 address (octets must be 0-255)`);
  }
  // The spec's dns-name is deliberately loose (1*255 of [A-Za-z0-9.-]); remote servers rely on it.
  if (!DNS_NAME.test(host)) {
    return fail(`${quote(host)} is not a valid DNS name (allowed: letters, digits, '-' and '.')`);
  }
  return ok({ host, kind: "dns" });
}

function parsePort(text: string): IdResult<number> {
  if (!/^\d{1,5}$/.test(text)) return fail(`port ${quote(text)} is not a number from 1 to 65535`);
  const port = Number(text);
  if (port < 1 || port > 65535) return fail(`port ${text} is outside 1-65535`);
  return ok(port);
}

/** Parse `host[:port]` where host is a DNS name, IPv4 literal or bracketed IPv6 literal. */
export function parseServerName(s: string): IdResult<ServerName> {
  const what = `Invalid server name ${quote(s)}`;
  if (s === "") return fail(`${what}: empty`);
  if (s.length > MAX_ID_BYTES) return fail(`${what}: longer than ${MAX_ID_BYTES} characters`);
  let hostText: string;
  let portText: string | undefined;
  let bracketed = false;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) return fail(`${what}: missing ']' after IPv6 literal`);
    hostText = s.slice(1, close);
    bracketed = true;
    const rest = s.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return fail(`${what}: unexpected text after ']'`);
      portText = rest.slice(1);
    }
  } else {
    const parts = s.split(":");
    if (parts.length > 2) return fail(`${what}: IPv6 literals must be in brackets`);
    [hostText, portText] = parts;
  }
  const host = parseHost(hostText, bracketed);
  if (!host.ok) return fail(`${what}: ${host.reason}`);
  if (portText === undefined) return ok({ ...host.value });
  const port = parsePort(portText);
  if (!port.ok) return fail(`${what}: ${port.reason}`);
  return ok({ ...host.value, port: port.value });
}

/** Whether `s` is a valid server name. */
export function isValidServerName(s: string): boolean {
  return parseServerName(s).ok;
}

/** Parse a bind address: IPv4, IPv6 (brackets optional and stripped) or DNS name. */
export function parseBindHost(s: string): IdResult<{ host: string; kind: HostKind }> {
  const bracketed = s.startsWith("[") && s.endsWith("]");
  const inner = bracketed ? s.slice(1, -1) : s;
  if (!bracketed && inner.includes(":")) return parseHost(inner, true);
  return parseHost(inner, bracketed);
}

// --- Sigil IDs with a server part ---------------------------------------------------------

/** Split `<sigil>local:server` at the first ':' (localparts never contain one). */
function splitSigilId(
  s: string,
  sigil: string,
  noun: string,
): IdResult<{ local: string; serverName: string; server: ServerName }> {
  const what = `Invalid ${noun} ${quote(s)}`;
  if (!s.startsWith(sigil)) return fail(`${what}: must start with '${sigil}'`);
  if (byteLength(s) > MAX_ID_BYTES) return fail(`${what}: longer than ${MAX_ID_BYTES} bytes`);
  const colon = s.indexOf(":");
  if (colon < 0) return fail(`${what}: missing ':server' part`);
  const local = s.slice(1, colon);
  const serverName = s.slice(colon + 1);
  const server = parseServerName(serverName);
  if (!server.ok) return fail(`${what}: ${server.reason}`);
  return ok({ local, serverName, server: server.value });
}

/**
 * Opaque parts of room IDs, aliases and v1/v2 event IDs may be any Unicode except NUL (and ':',
 * which the split already excludes); lone surrogates are not valid code points.
 */
function opaquePartProblem(part: string): string | undefined {
  if (part === "") return "the part before ':' is empty";
  if (part.includes("\u0000")) return "contains NUL";
  if (!part.isWellFormed()) return "contains an unpaired surrogate";
  return undefined;
}

// --- User IDs -------------------------------------------------------------------------------

const STRICT_LOCALPART = /^[a-z0-9._=\-/+]+$/;
// Historical user IDs: any printable ASCII except ':' (%x21-39 / %x3B-7E).
const HISTORICAL_LOCALPART = /^[\x21-\x39\x3B-\x7E]+$/;

/** Parse `@localpart:server`, accepting the historical grammar used by existing remote users. */
export function parseUserId(s: string): IdResult<UserId> {
  const split = splitSigilId(s, "@", "user ID");
  if (!split.ok) return split;
  const { local, serverName, server } = split.value;
  const what = `Invalid user ID ${quote(s)}`;
  if (local === "") return fail(`${what}: localpart is empty`);
  if (!HISTORICAL_LOCALPART.test(local)) {
    return fail(`${what}: localpart may only contain printable ASCII other than ':'`);
  }
  return ok({ localpart: local, serverName, server, historical: !STRICT_LOCALPART.test(local) });
}

/** Whether `s` is a user ID acceptable from anywhere (historical grammar allowed). */
export function isValidUserId(s: string): boolean {
  return parseUserId(s).ok;
}

/**
 * Check a localpart for a NEW local account: only `a-z 0-9 . _ = - / +`, and, when the server
 * name is given, the whole user ID must fit in 255 bytes.
 */
export function checkRegistrationLocalpart(
  localpart: string,
  serverName?: string,
): IdResult<string> {
  const what = `Invalid username ${quote(localpart)}`;
  if (localpart === "") return fail(`${what}: empty`);
  if (!STRICT_LOCALPART.test(localpart)) {
    return fail(`${what}: only a-z, 0-9 and . _ = - / + are allowed`);
  }
  if (serverName !== undefined && byteLength(`@${localpart}:${serverName}`) > MAX_ID_BYTES) {
    return fail(`${what}: the user ID would be longer than ${MAX_ID_BYTES} bytes`);
  }
  return ok(localpart);
}

/** Whether a localpart may be used to register a new local account. */
export function isValidLocalpartForRegistration(localpart: string, serverName?: string): boolean {
  return checkRegistrationLocalpart(localpart, serverName).ok;
}

// --- Room IDs and aliases -------------------------------------------------------------------

const URL_SAFE_HASH = /^[A-Za-z0-9_-]{43}$/;
const STANDARD_HASH = /^[A-Za-z0-9+/]{43}$/;

/** Parse a room ID of either form: `!opaque:server` or v12 `!` + 43-char URL-safe hash. */
export function parseRoomId(s: string): IdResult<RoomId> {
  const what = `Invalid room ID ${quote(s)}`;
  if (!s.startsWith("!")) return fail(`${what}: must start with '!'`);
  if (!s.includes(":")) {
    const hash = s.slice(1);
    if (!URL_SAFE_HASH.test(hash)) {
      return fail(`${what}: without ':server' it must be 43 URL-safe base64 characters (v12)`);
    }
    return ok({ kind: "hash", hash });
  }
  const split = splitSigilId(s, "!", "room ID");
  if (!split.ok) return split;
  const problem = opaquePartProblem(split.value.local);
  if (problem) return fail(`${what}: ${problem}`);
  return ok({ kind: "server", opaque: split.value.local, serverName: split.value.serverName });
}

/** Whether `s` is a valid room ID of either form. */
export function isValidRoomId(s: string): boolean {
  return parseRoomId(s).ok;
}

/** Parse a room alias `#alias:server`. */
export function parseRoomAlias(s: string): IdResult<RoomAlias> {
  const split = splitSigilId(s, "#", "room alias");
  if (!split.ok) return split;
  const problem = opaquePartProblem(split.value.local);
  if (problem) return fail(`Invalid room alias ${quote(s)}: ${problem}`);
  return ok({ alias: split.value.local, serverName: split.value.serverName });
}

/** Whether `s` is a valid room alias. */
export function isValidRoomAlias(s: string): boolean {
  return parseRoomAlias(s).ok;
}

// --- Event IDs ------------------------------------------------------------------------------

/**
 * Parse an event ID. With `format` (from the room version) only that form is accepted; without
 * it any form is, and a 43-character hash of either base64 alphabet counts as a reference hash.
 */
export function parseEventId(s: string, format?: EventIdFormat): IdResult<EventId> {
  const what = `Invalid event ID ${quote(s)}`;
  if (!s.startsWith("$")) return fail(`${what}: must start with '$'`);
  if (s.includes(":")) {
    if (format !== undefined && format !== "server_chosen") {
      return fail(`${what}: this room version uses hash event IDs without ':server'`);
    }
    const split = splitSigilId(s, "$", "event ID");
    if (!split.ok) return split;
    const problem = opaquePartProblem(split.value.local);
    if (problem) return fail(`${what}: ${problem}`);
    return ok({
      kind: "server_chosen",
      opaque: split.value.local,
      serverName: split.value.serverName,
    });
  }
  const hash = s.slice(1);
  switch (format) {
    case "server_chosen":
      return fail(`${what}: this room version needs '$opaque:server'`);
    case "reference_hash":
      return STANDARD_HASH.test(hash)
        ? ok({ kind: "reference_hash", hash })
        : fail(`${what}: expected '$' + 43 characters of standard base64`);
    case "reference_hash_url_safe":
      return URL_SAFE_HASH.test(hash)
        ? ok({ kind: "reference_hash", hash })
        : fail(`${what}: expected '$' + 43 characters of URL-safe base64`);
    default:
      return STANDARD_HASH.test(hash) || URL_SAFE_HASH.test(hash)
        ? ok({ kind: "reference_hash", hash })
        : fail(`${what}: expected '$opaque:server' or '$' + a 43-character base64 hash`);
  }
}

/** Whether `s` is a valid event ID (for the given event ID format, if any). */
export function isValidEventId(s: string, format?: EventIdFormat): boolean {
  return parseEventId(s, format).ok;
}

// --- Key IDs, device IDs, opaque IDs --------------------------------------------------------

// Algorithm names follow the common namespaced identifier grammar; versions are [a-zA-Z0-9_].
const KEY_ALGORITHM = /^[a-z][a-z0-9._-]*$/;
const KEY_VERSION = /^[A-Za-z0-9_]+$/;

/** Parse a signing key ID `algorithm:version`, e.g. `ed25519:abc_`. */
export function parseKeyId(s: string): IdResult<KeyId> {
  const what = `Invalid key ID ${quote(s)}`;
  if (s.length > MAX_ID_BYTES) return fail(`${what}: longer than ${MAX_ID_BYTES} characters`);
  const colon = s.indexOf(":");
  if (colon < 0) return fail(`${what}: expected 'algorithm:version'`);
  const algorithm = s.slice(0, colon);
  const version = s.slice(colon + 1);
  if (!KEY_ALGORITHM.test(algorithm)) {
    return fail(`${what}: algorithm must be lowercase letters, digits, '.', '_' or '-'`);
  }
  if (!KEY_VERSION.test(version)) return fail(`${what}: version may only contain a-z, A-Z, 0-9, _`);
  return ok({ algorithm, version });
}

/** Whether `s` is a valid signing key ID. */
export function isValidKeyId(s: string): boolean {
  return parseKeyId(s).ok;
}

/**
 * Check a device ID. The spec leaves device IDs opaque and clients pick their own, so only what
 * would break storage or display is refused: empty, over 255 bytes, control characters.
 */
export function parseDeviceId(s: string): IdResult<string> {
  const what = `Invalid device ID ${quote(s)}`;
  if (s === "") return fail(`${what}: empty`);
  if (byteLength(s) > MAX_ID_BYTES) return fail(`${what}: longer than ${MAX_ID_BYTES} bytes`);
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(s)) return fail(`${what}: contains control characters`);
  if (!s.isWellFormed()) return fail(`${what}: contains an unpaired surrogate`);
  return ok(s);
}

/** Whether `s` is an acceptable device ID. */
export function isValidDeviceId(s: string): boolean {
  return parseDeviceId(s).ok;
}

const OPAQUE_ID = /^[A-Za-z0-9._~-]+$/;

/** Parse an opaque identifier (spec: `[A-Za-z0-9-._~]`, 1 to 255 characters), e.g. a txn ID. */
export function parseOpaqueId(s: string): IdResult<string> {
  const what = `Invalid identifier ${quote(s)}`;
  if (s === "") return fail(`${what}: empty`);
  if (s.length > MAX_ID_BYTES) return fail(`${what}: longer than ${MAX_ID_BYTES} characters`);
  if (!OPAQUE_ID.test(s)) return fail(`${what}: only A-Z, a-z, 0-9 and - . _ ~ are allowed`);
  return ok(s);
}

/** Whether `s` is a valid opaque identifier. */
export function isValidOpaqueId(s: string): boolean {
  return parseOpaqueId(s).ok;
}
