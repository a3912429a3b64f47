import assert from "node:assert/strict";
import {
  decodeBase64,
  encodeBase64Unpadded,
  encodeBase64UrlUnpadded,
  tryDecodeBase64,
} from "../../../domain/protocol/base64.ts";
import { MatrixError } from "../../../domain/errors.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();
const utf8 = new TextEncoder();

Deno.test("unpadded base64 reproduces the spec's examples", () => {
  for (const { input_utf8, encoded } of vectors.unpadded_base64) {
    assert.equal(encodeBase64Unpadded(utf8.encode(input_utf8)), encoded);
    assert.deepEqual(decodeBase64(encoded), utf8.encode(input_utf8));
  }
});

Deno.test("decoding accepts padded input", () => {
  assert.deepEqual(decodeBase64("Zg=="), utf8.encode("f"));
  assert.deepEqual(decodeBase64("Zm8="), utf8.encode("fo"));
  assert.deepEqual(decodeBase64("Zm9v"), utf8.encode("foo"));
});

Deno.test("URL-safe and standard alphabets encode and decode the same bytes", () => {
  const bytes = new Uint8Array([0xfb, 0xff, 0xbf, 0x3e]);
  assert.equal(encodeBase64Unpadded(bytes), "+/+/Pg");
  assert.equal(encodeBase64UrlUnpadded(bytes), "-_-_Pg");
  assert.deepEqual(decodeBase64("+/+/Pg"), bytes);
  assert.deepEqual(decodeBase64("-_-_Pg"), bytes);
  assert.deepEqual(decodeBase64("-_-_Pg=="), bytes);
});

Deno.test("the spec's seed with non-zero trailing bits decodes like its canonical form", () => {
  const { seed_base64, seed_base64_canonical, seed_hex } = vectors.signing_key;
  assert.notEqual(seed_base64, seed_base64_canonical);
  const seed = decodeBase64(seed_base64);
  assert.equal(seed.toHex(), seed_hex);
  assert.deepEqual(seed, decodeBase64(seed_base64_canonical));
  // Re-encoding yields the canonical text, so stored keys normalise.
  assert.equal(encodeBase64Unpadded(seed), seed_base64_canonical);
});

Deno.test("invalid characters are rejected with M_BAD_JSON naming the character", () => {
  for (const bad of ["Zm9v!", "Zm 9v", "Zm9v\n", "Zé9v"]) {
    assert.throws(() => decodeBase64(bad), (err: unknown) => {
      assert.ok(err instanceof MatrixError);
      assert.equal(err.errcode, "M_BAD_JSON");
      assert.equal(err.status, 400);
      assert.match(err.message, /unexpected character/);
      return true;
    });
  }
});

Deno.test("impossible lengths and misplaced padding are rejected", () => {
  assert.throws(() => decodeBase64("Z"), /dangling/);
  assert.throws(() => decodeBase64("Zm9vY"), /dangling/);
  assert.throws(() => decodeBase64("Zg="), /padding/);
  assert.throws(() => decodeBase64("Zm8=="), /padding/);
  assert.throws(() => decodeBase64("Zg=a"), /misplaced padding/);
  assert.throws(() => decodeBase64("Zg==="), /misplaced padding/);
});

Deno.test("tryDecodeBase64 returns undefined instead of throwing", () => {
  assert.equal(tryDecodeBase64("%%%"), undefined);
  assert.deepEqual(tryDecodeBase64("Zm9v"), utf8.encode("foo"));
});

Deno.test("random bytes round-trip through both alphabets", () => {
  for (let len = 0; len < 70; len++) {
    const bytes = crypto.getRandomValues(new Uint8Array(len));
    assert.deepEqual(decodeBase64(encodeBase64Unpadded(bytes)), bytes);
    assert.deepEqual(decodeBase64(encodeBase64UrlUnpadded(bytes)), bytes);
    assert.ok(!encodeBase64Unpadded(bytes).includes("="));
  }
});
