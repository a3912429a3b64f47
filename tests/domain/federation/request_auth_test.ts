import assert from "node:assert/strict";
import {
  formatXMatrix,
  parseXMatrix,
  requestSigningObject,
  signRequest,
  verifyRequestSignature,
} from "../../../domain/federation/request_auth.ts";
import {
  generateSigningSeed,
  signingKeyFromSeed,
  verifyEd25519,
} from "../../../domain/protocol/signing.ts";
import { canonicalJsonBytes } from "../../../domain/protocol/canonical_json.ts";
import { decodeBase64 } from "../../../domain/protocol/base64.ts";

const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:k1");
const other = await signingKeyFromSeed(generateSigningSeed(), "ed25519:k1");

const fields = {
  method: "PUT",
  uri: "/_matrix/federation/v1/send/txn1?x=%20y",
  origin: "a.example:8448",
  destination: "b.example",
  content: { pdus: [], edus: [{ edu_type: "m.typing", content: { typing: true } }] },
};

Deno.test("the signed object is {method, uri, origin, destination, content}", () => {
  assert.deepEqual(requestSigningObject(fields), fields);
  const { content: _c, ...noBody } = fields;
  assert.deepEqual(requestSigningObject({ ...noBody, method: "get" }), {
    ...noBody,
    method: "GET",
  });
});

Deno.test("signRequest signs the canonical JSON of the request object", async () => {
  const header = await signRequest(fields, key);
  assert.match(
    header,
    /^X-Matrix origin="a\.example:8448",destination="b\.example",key="ed25519:k1",sig="[A-Za-z0-9+/]+"$/,
  );
  const auth = parseXMatrix(header)!;
  // Checked independently of verifyRequestSignature: raw Ed25519 over the canonical bytes.
  const message = canonicalJsonBytes(requestSigningObject(fields));
  assert.ok(await verifyEd25519(key.publicKey, message, decodeBase64(auth.sig)));
  const request = {
    method: "PUT",
    uri: fields.uri,
    destination: "b.example",
    content: fields.content,
  };
  assert.ok(await verifyRequestSignature(auth, request, key.publicKey));
});

Deno.test("verification fails on any change to what the signature covers", async () => {
  const auth = parseXMatrix(await signRequest(fields, key))!;
  const base = {
    method: "PUT",
    uri: fields.uri,
    destination: "b.example",
    content: fields.content,
  };
  const changes = [
    { ...base, method: "POST" },
    { ...base, uri: "/_matrix/federation/v1/send/txn2?x=%20y" },
    { ...base, uri: "/_matrix/federation/v1/send/txn1" },
    { ...base, destination: "c.example" },
    { ...base, content: { pdus: [], edus: [] } },
    { method: "PUT", uri: fields.uri, destination: "b.example" },
  ];
  for (const changed of changes) {
    assert.equal(await verifyRequestSignature(auth, changed, key.publicKey), false);
  }
  assert.equal(await verifyRequestSignature(auth, base, other.publicKey), false);
  assert.equal(
    await verifyRequestSignature({ ...auth, origin: "c.example" }, base, key.publicKey),
    false,
  );
  assert.equal(await verifyRequestSignature({ ...auth, sig: "!!!" }, base, key.publicKey), false);
});

Deno.test("a request without a body is signed without content", async () => {
  const { content: _c, ...get } = { ...fields, method: "GET" };
  const auth = parseXMatrix(await signRequest(get, key))!;
  assert.ok(
    await verifyRequestSignature(
      auth,
      { method: "GET", uri: get.uri, destination: "b.example" },
      key.publicKey,
    ),
  );
  assert.equal(
    await verifyRequestSignature(auth, {
      method: "GET",
      uri: get.uri,
      destination: "b.example",
      content: {},
    }, key.publicKey),
    false,
  );
});

Deno.test("parseXMatrix: quoted and unquoted values, any order, case-insensitive names and scheme", () => {
  const expected = {
    origin: "a.example:8448",
    destination: "b.example",
    key: "ed25519:k1",
    sig: "c2ln+/",
  };
  const variants = [
    'X-Matrix origin="a.example:8448",destination="b.example",key="ed25519:k1",sig="c2ln+/"',
    'x-matrix origin="a.example:8448", destination="b.example" , key="ed25519:k1",\tsig="c2ln+/"',
    'X-MATRIX  SIG="c2ln+/",Key="ed25519:k1",Origin="a.example:8448",DESTINATION=b.example',
    // Synapse before 1.x sent unquoted values; ':' and '/' are not token characters, so
    // such values must be quoted, but a token value needs no quotes.
    'X-Matrix origin="a.example:8448",destination=b.example,key="ed25519:k1",sig="c2ln+/"',
    'X-Matrix origin="a.exa\\mple:8448",destination="b.example",key="ed25519:k1",sig="c2ln+/"',
  ];
  for (const header of variants) assert.deepEqual(parseXMatrix(header), expected, header);
  // Without destination (servers before v1.3).
  assert.deepEqual(parseXMatrix('X-Matrix origin=a.example,key="ed25519:k1",sig=abc'), {
    origin: "a.example",
    key: "ed25519:k1",
    sig: "abc",
  });
});

Deno.test("parseXMatrix: escapes round-trip through formatXMatrix", () => {
  const auth = { origin: 'we"ird\\', destination: "b", key: "ed25519:1", sig: "s" };
  assert.deepEqual(parseXMatrix(formatXMatrix(auth)), auth);
});

Deno.test("parseXMatrix refuses other schemes and malformed headers", () => {
  const bad = [
    "",
    "Bearer abc",
    "X-Matrix",
    "X-Matrix ",
    'X-Matrix origin="a"',
    'X-Matrix origin="a",key="ed25519:1"',
    'X-Matrix origin="a",key="ed25519:1",sig=""',
    'X-Matrix origin="a",key="ed25519:1",sig="s",origin="b"',
    'X-Matrix origin="a,key="ed25519:1",sig="s"',
    'X-Matrix origin="a" key="ed25519:1",sig="s"',
    'X-Matrix origin=a:b,key="ed25519:1",sig="s"',
    'X-Matrix =a,key="ed25519:1",sig="s"',
    'X-Matrix origin="a",key="ed25519:1",sig="s",',
    'X-Matrix origin="a",key="ed25519:1",sig="s\\',
  ];
  for (const header of bad) assert.equal(parseXMatrix(header), null, header);
});

Deno.test("bodies with floats (invalid in v6+ events) are signed and verified all the same", async () => {
  const content = { event: { content: { bad_val: 1.1 } }, n: 3 };
  const uri = "/_matrix/federation/v2/send_join/!r:a/$e";
  const auth = parseXMatrix(
    await signRequest({
      method: "PUT",
      uri,
      origin: "a.example",
      destination: "b.example",
      content,
    }, key),
  )!;
  assert.ok(
    await verifyRequestSignature(
      auth,
      { method: "PUT", uri, destination: "b.example", content },
      key.publicKey,
    ),
  );
  // The float is covered: another value does not verify.
  const changed = { event: { content: { bad_val: 1.2 } }, n: 3 };
  assert.equal(
    await verifyRequestSignature(auth, {
      method: "PUT",
      uri,
      destination: "b.example",
      content: changed,
    }, key.publicKey),
    false,
  );
});
