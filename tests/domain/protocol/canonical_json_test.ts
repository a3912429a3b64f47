import assert from "node:assert/strict";
import {
  canonicalJson,
  canonicalJsonBytes,
  compareCodePoints,
  parseJsonStrict,
} from "../../../domain/protocol/canonical_json.ts";
import { MatrixError } from "../../../domain/errors.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();
const utf8 = new TextEncoder();

function assertBadJson(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof MatrixError, `expected MatrixError, got ${err}`);
    assert.equal(err.errcode, "M_BAD_JSON");
    assert.equal(err.status, 400);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("the spec's canonical JSON examples reproduce byte for byte", () => {
  assert.ok(vectors.canonical_json.length >= 10);
  for (const { input, canonical } of vectors.canonical_json) {
    const value = JSON.parse(input);
    assert.equal(canonicalJson(value), canonical);
    assert.deepEqual(canonicalJsonBytes(value), utf8.encode(canonical));
  }
});

Deno.test("keys sort by code point, not by UTF-16 code unit", () => {
  // U+FB01 is above the surrogate range in UTF-16 but below U+1F600 as a code point.
  const value = { "\u{1F600}": 1, "\uFB01": 2, "a": 3, "\uD7FF": 4 };
  assert.equal(canonicalJson(value), '{"a":3,"\uD7FF":4,"\uFB01":2,"\u{1F600}":1}');
  // Independent oracle: code point order is UTF-8 byte order.
  const keys = ["\u{1F600}", "\uFB01", "\u{10000}", "\uE000", "\uFFFF", "z", "\u{1F601}", "é"];
  const byBytes = [...keys].sort((a, b) => {
    const x = utf8.encode(a);
    const y = utf8.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
  assert.deepEqual([...keys].sort(compareCodePoints), byBytes);
  assert.notDeepEqual([...keys].sort(), byBytes, "the default sort really differs here");
});

Deno.test("control characters use the grammar's escapes, lowercase hex", () => {
  const short: Record<number, string> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };
  for (let c = 0; c < 0x20; c++) {
    const expected = short[c] ?? `\\u00${c.toString(16).padStart(2, "0")}`;
    assert.equal(canonicalJson(String.fromCharCode(c)), `"${expected}"`);
  }
  assert.equal(canonicalJson("\u001b"), '"\\u001b"');
});

Deno.test("only quote and backslash are escaped among printable characters", () => {
  assert.equal(canonicalJson('a"b\\c/d'), '"a\\"b\\\\c/d"');
  // U+2028/2029, DEL and non-ASCII go out raw, as UTF-8.
  const raw = "\u2028\u2029\u007f日\u{1F600}";
  assert.equal(canonicalJson(raw), `"${raw}"`);
  assert.deepEqual(canonicalJsonBytes(raw), utf8.encode(`"${raw}"`));
});

Deno.test("numbers: integer range, -0, exponents, floats, NaN", () => {
  assert.equal(canonicalJson(-0), "0");
  assert.equal(canonicalJson(1e10), "10000000000");
  assert.equal(canonicalJson(2 ** 53 - 1), "9007199254740991");
  assert.equal(canonicalJson(-(2 ** 53 - 1)), "-9007199254740991");
  assertBadJson(() => canonicalJson(2 ** 53), /outside/);
  assertBadJson(() => canonicalJson(-(2 ** 53)), /outside/);
  assertBadJson(() => canonicalJson({ a: 1.5 }), /Floats/);
  assertBadJson(() => canonicalJson(NaN));
  assertBadJson(() => canonicalJson(Infinity));
  assertBadJson(() => canonicalJson(-Infinity, { strict: false }));
  assertBadJson(() => canonicalJson(NaN, { strict: false }));
});

Deno.test("non-strict mode encodes old-room numbers instead of rejecting them", () => {
  assert.equal(canonicalJson(2 ** 60, { strict: false }), "1152921504606846976");
  assert.equal(canonicalJson({ a: 1.5 }, { strict: false }), '{"a":1.5}');
  assert.equal(canonicalJson(-0, { strict: false }), "0");
});

Deno.test("unencodable values are rejected", () => {
  assertBadJson(() => canonicalJson("\uD800"), /surrogate/);
  assertBadJson(() => canonicalJson({ "\uDC00": 1 }), /surrogate/);
  assertBadJson(() => canonicalJson(undefined));
  assertBadJson(() => canonicalJson([undefined]));
  assertBadJson(() => canonicalJson(10n));
  assertBadJson(() => canonicalJson(() => 1));
  assertBadJson(() => canonicalJson(new Date(0)), /plain objects/);
  assertBadJson(() => canonicalJson(new Map()), /plain objects/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assertBadJson(() => canonicalJson(cyclic), /deeply/);
});

Deno.test("undefined members are left out, like absent optional fields", () => {
  assert.equal(canonicalJson({ b: undefined, a: [null, true, false] }), '{"a":[null,true,false]}');
  assert.equal(
    canonicalJson(Object.assign(Object.create(null), { z: 1, y: {} })),
    '{"y":{},"z":1}',
  );
});

Deno.test("parseJsonStrict accepts integers and rejects floats, range and bad text", () => {
  assert.deepEqual(parseJsonStrict('{"a":[1,-2,9007199254740991],"b":"x"}'), {
    a: [1, -2, 9007199254740991],
    b: "x",
  });
  assert.equal(canonicalJson(parseJsonStrict('{"a":-0}')), '{"a":0}');
  assertBadJson(() => parseJsonStrict('{"a":1.0}'), /Floats/);
  assertBadJson(() => parseJsonStrict("[1e3]"), /Floats/);
  assertBadJson(() => parseJsonStrict("[1E3]"), /Floats/);
  assertBadJson(() => parseJsonStrict("9007199254740992"), /outside/);
  assertBadJson(() => parseJsonStrict('"\\ud800"'), /surrogate/);
  assertBadJson(() => parseJsonStrict('{"\\udc00":1}'), /surrogate/);
  assert.throws(() => parseJsonStrict("{"), (err: unknown) => {
    assert.ok(err instanceof MatrixError);
    assert.equal(err.errcode, "M_NOT_JSON");
    return true;
  });
  assert.throws(() => parseJsonStrict("NaN"), /not valid JSON/);
});
