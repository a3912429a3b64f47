/**
 * Matrix canonical JSON (spec appendix "Canonical JSON"): object keys sorted by Unicode code
 * point, no insignificant whitespace, UTF-8, only the escapes the grammar requires, integers
 * only. Signatures, content hashes and event IDs are all computed over this encoding, so a single
 * byte of difference from other servers breaks federation.
 */
import { badJson, notJson } from "../errors.ts";
import type { JsonValue } from "./json.ts";

/** The largest integer canonical JSON admits; the smallest is its negation. */
export const MAX_CANONICAL_INTEGER = Number.MAX_SAFE_INTEGER;

/** How canonical JSON treats numbers the strict grammar forbids. */
export interface CanonicalJsonOptions {
  /**
   * True (the default, and room v6+ rules): reject floats and integers outside ±(2^53-1).
   * False (room v1-5 events): encode them as best we can, since those rooms may hold them.
   */
  strict?: boolean;
}

// Guards against cycles and pathological nesting turning into a stack overflow.
const MAX_DEPTH = 512;

const encoder = new TextEncoder();

/** Encode a JSON value as a canonical JSON string. Throws M_BAD_JSON for unencodable values. */
export function canonicalJson(value: unknown, options: CanonicalJsonOptions = {}): string {
  return encodeValue(value, options.strict ?? true, 0);
}

/** Encode a JSON value as canonical JSON UTF-8 bytes, ready to hash or sign. */
export function canonicalJsonBytes(value: unknown, options: CanonicalJsonOptions = {}): Uint8Array {
  return encoder.encode(canonicalJson(value, options));
}

/**
 * Order two strings by Unicode code point. Plain `<` compares UTF-16 code units, which puts
 * astral characters (surrogate pairs, D800-DFFF) before BMP characters from U+E000 up.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) return surrogateLast(x) - surrogateLast(y);
    return x - y;
  }
  return a.length - b.length;
}

// Moves surrogates above U+E000-U+FFFF while keeping each group's internal order.
function surrogateLast(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

function encodeValue(value: unknown, strict: boolean, depth: number): string {
  switch (typeof value) {
    case "string":
      return encodeString(value);
    case "number":
      return encodeNumber(value, strict);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    default:
      throw badJson(`Cannot encode a ${typeof value} as canonical JSON`);
  }
  if (value === null) return "null";
  if (depth >= MAX_DEPTH) throw badJson("JSON nested too deeply");
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ",";
      out += encodeValue(value[i], strict, depth + 1);
    }
    return out + "]";
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw badJson("Only plain objects can be encoded as canonical JSON");
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort(compareCodePoints);
  let out = "{";
  let first = true;
  for (const key of keys) {
    const member = record[key];
    // Optional fields left undefined are absent, as with JSON.stringify; there is no JSON for them.
    if (member === undefined) continue;
    if (!first) out += ",";
    first = false;
    out += encodeString(key) + ":" + encodeValue(member, strict, depth + 1);
  }
  return out + "}";
}

function encodeString(value: string): string {
  // A lone surrogate has no UTF-8 encoding, so no canonical form either.
  if (!value.isWellFormed()) throw badJson("String contains an unpaired surrogate");
  // JSON.stringify escapes exactly what the grammar requires: `"`, `\`, the short forms
  // \b \f \n \r \t, other C0 controls as lowercase \u00xx; everything else (U+2028/2029, U+007F,
  // non-ASCII) is emitted raw.
  return JSON.stringify(value);
}

function encodeNumber(value: number, strict: boolean): string {
  if (!Number.isFinite(value)) throw badJson("NaN and Infinity are not valid JSON");
  if (Number.isInteger(value)) {
    if (Math.abs(value) <= MAX_CANONICAL_INTEGER) {
      // String(-0) is "0", which is what the spec's example wants.
      return String(value);
    }
    if (strict) throw badJson(`Integer ${value} is outside the canonical JSON range`);
    // Exact decimal digits of the double; the original text (if longer) is already lost.
    return BigInt(value).toString();
  }
  if (strict) throw badJson(`Floats are not allowed in canonical JSON (got ${value})`);
  // Best effort for old rooms: Python prints some floats differently (1e-07 vs 1e-7).
  return String(value);
}

/**
 * Parse JSON text the way room v6+ expects it: rejects floats (any fraction or exponent),
 * integers outside ±(2^53-1), NaN-like tokens and unpaired surrogates. Throws M_NOT_JSON for
 * text that is not JSON and M_BAD_JSON for the rest. Duplicate keys keep the last value, as
 * Python's parser (and therefore Synapse) does.
 */
export function parseJsonStrict(text: string): JsonValue {
  let parsed: JsonValue;
  try {
    parsed = JSON.parse(text, strictReviver as Parameters<typeof JSON.parse>[1]);
  } catch (err) {
    if (err instanceof SyntaxError) throw notJson();
    throw err;
  }
  return parsed;
}

// The reviver's third argument (JSON.parse source text access) exposes the number's original
// text, which is the only way to tell `1.0` or `1e3` from `1` after parsing.
function strictReviver(
  key: string,
  value: unknown,
  context?: { source?: string },
): unknown {
  if (!key.isWellFormed()) throw badJson("Key contains an unpaired surrogate");
  if (typeof value === "number") {
    const source = context?.source ?? String(value);
    if (/[.eE]/.test(source)) throw badJson(`Floats are not allowed (got ${source})`);
    if (!Number.isSafeInteger(value)) {
      throw badJson(`Integer ${source} is outside the canonical JSON range`);
    }
  } else if (typeof value === "string" && !value.isWellFormed()) {
    throw badJson("String contains an unpaired surrogate");
  }
  return value;
}
