import assert from "node:assert/strict";
import { MatrixError } from "../../../domain/errors.ts";
import {
  checkRegistrationLocalpart,
  isIpv6Address,
  isValidDeviceId,
  isValidEventId,
  isValidKeyId,
  isValidLocalpartForRegistration,
  isValidOpaqueId,
  isValidRoomAlias,
  isValidRoomId,
  isValidServerName,
  isValidUserId,
  parseBindHost,
  parseEventId,
  parseKeyId,
  parseRoomAlias,
  parseRoomId,
  parseServerName,
  parseUserId,
  requireValid,
} from "../../../domain/protocol/identifiers.ts";

const HASH_URL_SAFE = "Gz-P_7j1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 43 chars
const HASH_STANDARD = "Gz+P/7j1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const HASH_PLAIN = "abcdefghijABCDEFGHIJ0123456789abcdefghijABC";

Deno.test("hash fixtures are 43 characters", () => {
  for (const h of [HASH_URL_SAFE, HASH_STANDARD, HASH_PLAIN]) assert.equal(h.length, 43);
});

Deno.test("parseServerName: DNS names with and without port", () => {
  assert.deepEqual(parseServerName("matrix.org"), {
    ok: true,
    value: { host: "matrix.org", kind: "dns" },
  });
  assert.deepEqual(parseServerName("localhost:8008"), {
    ok: true,
    value: { host: "localhost", kind: "dns", port: 8008 },
  });
  assert.deepEqual(parseServerName("Example-1.COM:1"), {
    ok: true,
    value: { host: "Example-1.COM", kind: "dns", port: 1 },
  });
  assert.equal(isValidServerName("a:65535"), true);
});

Deno.test("parseServerName: IPv4 literals", () => {
  assert.deepEqual(parseServerName("1.2.3.4:8448"), {
    ok: true,
    value: { host: "1.2.3.4", kind: "ipv4", port: 8448 },
  });
  assert.deepEqual(parseServerName("255.255.255.255"), {
    ok: true,
    value: { host: "255.255.255.255", kind: "ipv4" },
  });
  const bad = parseServerName("1.2.3.256");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.reason : "", /IPv4/);
});

Deno.test("parseServerName: IPv6 literals in brackets", () => {
  assert.deepEqual(parseServerName("[::1]:8448"), {
    ok: true,
    value: { host: "::1", kind: "ipv6", port: 8448 },
  });
  assert.deepEqual(parseServerName("[1234:5678::abcd]"), {
    ok: true,
    value: { host: "1234:5678::abcd", kind: "ipv6" },
  });
  assert.equal(isValidServerName("[2001:db8:0:0:0:0:0:1]"), true);
  assert.equal(isValidServerName("[::ffff:192.0.2.1]:443"), true);
  assert.equal(isValidServerName("::1"), false, "unbracketed IPv6");
  assert.equal(isValidServerName("[::1"), false, "unclosed bracket");
  assert.equal(isValidServerName("[::1]8448"), false, "missing ':' before port");
  assert.equal(isValidServerName("[example.com]"), false, "brackets around a DNS name");
  assert.equal(isValidServerName("[1:2:3:4:5:6:7:8:9]"), false, "too many groups");
  assert.equal(isValidServerName("[1::2::3]"), false, "two compressions");
  assert.equal(isValidServerName("[12345::1]"), false, "group too long");
  assert.equal(isValidServerName("[fe80::1%eth0]"), false, "zone IDs not allowed");
});

Deno.test("isIpv6Address: edge forms", () => {
  for (const good of ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6::", "::ffff:1.2.3.4"]) {
    assert.equal(isIpv6Address(good), true, good);
  }
  for (
    const bad of [
      ":1::2",
      "1::2:",
      ":::",
      "1:2:3:4:5:6:7",
      "1.2.3.4",
      "g::1",
      "1:2:3:4:5:6:7:1.2.3.4",
    ]
  ) {
    assert.equal(isIpv6Address(bad), false, bad);
  }
});

Deno.test("parseServerName: bad ports", () => {
  for (
    const s of [
      "example.com:0",
      "example.com:65536",
      "example.com:abc",
      "example.com:",
      "[::1]:0",
      "a:123456",
      "a:-1",
      "a:+80",
    ]
  ) {
    const r = parseServerName(s);
    assert.equal(r.ok, false, s);
    assert.match(!r.ok ? r.reason : "", /port/, s);
  }
});

Deno.test("parseServerName: bad hosts and lengths", () => {
  assert.equal(isValidServerName(""), false);
  assert.equal(isValidServerName(":8448"), false, "no host");
  assert.equal(isValidServerName("exa_mple.com"), false, "underscore");
  assert.equal(isValidServerName("exa mple.com"), false, "space");
  assert.equal(isValidServerName("a:1:2"), false);
  assert.equal(isValidServerName("ä.example"), false, "non-ASCII");
  assert.equal(isValidServerName("a".repeat(255)), true);
  const long = parseServerName("a".repeat(256));
  assert.equal(long.ok, false);
  assert.match(!long.ok ? long.reason : "", /255/);
});

Deno.test("parseUserId: strict and historical localparts", () => {
  assert.deepEqual(parseUserId("@alice:example.com"), {
    ok: true,
    value: {
      localpart: "alice",
      serverName: "example.com",
      server: { host: "example.com", kind: "dns" },
      historical: false,
    },
  });
  const remote = parseUserId("@Alice!#$%&'()*:[::1]:8448");
  assert.equal(remote.ok, true);
  assert.equal(remote.ok && remote.value.historical, true);
  assert.equal(remote.ok && remote.value.localpart, "Alice!#$%&'()*");
  assert.equal(remote.ok && remote.value.server.port, 8448);
  assert.equal(isValidUserId("@a.b_c=d-e/f+g:hs"), true);
  assert.equal(isValidUserId("@UPPER:example.com"), true, "uppercase accepted for remote IDs");
});

Deno.test("parseUserId: rejects bad user IDs with reasons", () => {
  const cases: [string, RegExp][] = [
    ["alice:example.com", /must start with '@'/],
    ["!alice:example.com", /must start with '@'/],
    ["@alice", /missing ':server'/],
    ["@:example.com", /localpart is empty/],
    ["@al ice:example.com", /printable ASCII/],
    ["@alïce:example.com", /printable ASCII/],
    ["@alice:exa mple.com", /server name/],
    ["@alice:example.com:0", /port/],
    ["@alice:", /server name/],
  ];
  for (const [input, reason] of cases) {
    const r = parseUserId(input);
    assert.equal(r.ok, false, input);
    assert.match(!r.ok ? r.reason : "", reason, input);
  }
});

Deno.test("parseUserId: 255-byte limit on the whole ID", () => {
  const server = "example.com";
  const fits = `@${"a".repeat(255 - 2 - server.length)}:${server}`;
  assert.equal(fits.length, 255);
  assert.equal(isValidUserId(fits), true);
  const over = `@${"a".repeat(256 - 2 - server.length)}:${server}`;
  const r = parseUserId(over);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.reason : "", /255 bytes/);
  assert.ok(!r.ok && r.reason.length < 200, "reason quotes a shortened input");
});

Deno.test("registration localparts: strict grammar only", () => {
  for (const good of ["alice", "a.b_c=d-e/f+g", "0123", "x"]) {
    assert.equal(isValidLocalpartForRegistration(good), true, good);
  }
  for (const bad of ["", "Alice", "ALICE", "al ice", "al:ice", "al!ce", "ali#ce", "alïce"]) {
    assert.equal(isValidLocalpartForRegistration(bad), false, bad);
  }
  const upper = checkRegistrationLocalpart("Alice");
  assert.match(!upper.ok ? upper.reason : "", /a-z/);
  assert.equal(isValidLocalpartForRegistration("a".repeat(240), "example.com"), true);
  const long = checkRegistrationLocalpart("a".repeat(250), "example.com");
  assert.equal(long.ok, false);
  assert.match(!long.ok ? long.reason : "", /255 bytes/);
});

Deno.test("parseRoomId: server form and v12 hash form", () => {
  assert.deepEqual(parseRoomId("!abcDEF:example.com"), {
    ok: true,
    value: { kind: "server", opaque: "abcDEF", serverName: "example.com" },
  });
  assert.deepEqual(parseRoomId(`!${HASH_URL_SAFE}`), {
    ok: true,
    value: { kind: "hash", hash: HASH_URL_SAFE },
  });
  assert.equal(isValidRoomId("!ünïcode room:example.com"), true, "opaque part may be any Unicode");
  assert.equal(isValidRoomId(`!${HASH_STANDARD}`), false, "v12 room IDs are URL-safe");
  assert.equal(isValidRoomId(`!${HASH_URL_SAFE.slice(1)}`), false, "42 characters");
  assert.equal(isValidRoomId(`!${HASH_URL_SAFE}A`), false, "44 characters");
  assert.equal(isValidRoomId("!abc"), false);
  assert.equal(isValidRoomId("!:example.com"), false, "empty opaque part");
  assert.equal(isValidRoomId("!a\u0000b:example.com"), false, "NUL");
  assert.equal(isValidRoomId("!a\ud800b:example.com"), false, "lone surrogate");
  assert.equal(isValidRoomId(HASH_URL_SAFE), false, "missing sigil");
  assert.equal(isValidRoomId(`!${"a".repeat(250)}:example.com`), false, "over 255 bytes");
  const r = parseRoomId("!abc");
  assert.match(!r.ok ? r.reason : "", /43 URL-safe/);
});

Deno.test("parseRoomAlias", () => {
  assert.deepEqual(parseRoomAlias("#room:example.com:8448"), {
    ok: true,
    value: { alias: "room", serverName: "example.com:8448" },
  });
  assert.equal(isValidRoomAlias("#Ünïcode:hs"), true);
  assert.equal(isValidRoomAlias("room:example.com"), false);
  assert.equal(isValidRoomAlias("#:example.com"), false);
  assert.equal(isValidRoomAlias("#room"), false);
  assert.equal(isValidRoomAlias(`#${"é".repeat(126)}:hs`), false, "255 bytes, not characters");
  assert.equal(isValidRoomAlias(`#${"é".repeat(100)}:hs`), true);
});

Deno.test("parseEventId: every format, with and without a room version format", () => {
  assert.deepEqual(parseEventId("$abc123:example.com"), {
    ok: true,
    value: { kind: "server_chosen", opaque: "abc123", serverName: "example.com" },
  });
  assert.equal(isValidEventId("$abc:example.com", "server_chosen"), true);
  assert.equal(isValidEventId(`$${HASH_STANDARD}`, "reference_hash"), true);
  assert.equal(isValidEventId(`$${HASH_URL_SAFE}`, "reference_hash_url_safe"), true);
  assert.equal(isValidEventId(`$${HASH_PLAIN}`, "reference_hash"), true);
  assert.equal(isValidEventId(`$${HASH_PLAIN}`, "reference_hash_url_safe"), true);
  assert.equal(isValidEventId(`$${HASH_STANDARD}`), true);
  assert.equal(isValidEventId(`$${HASH_URL_SAFE}`), true);

  assert.equal(isValidEventId(`$${HASH_URL_SAFE}`, "reference_hash"), false, "v3 is standard");
  assert.equal(isValidEventId(`$${HASH_STANDARD}`, "reference_hash_url_safe"), false);
  assert.equal(isValidEventId(`$${HASH_PLAIN}`, "server_chosen"), false);
  assert.equal(isValidEventId("$abc:example.com", "reference_hash_url_safe"), false);
  assert.equal(isValidEventId(`$${HASH_PLAIN}A`), false, "44 characters");
  assert.equal(isValidEventId(`$${HASH_PLAIN.slice(1)}`), false, "42 characters");
  assert.equal(isValidEventId(`$${HASH_PLAIN.slice(1)}=`), false, "padding");
  assert.equal(isValidEventId(HASH_PLAIN), false, "missing sigil");
  assert.equal(isValidEventId("$:example.com"), false);
  assert.equal(isValidEventId(`$${"a".repeat(250)}:example.com`), false, "over 255 bytes");
  const r = parseEventId(`$${HASH_URL_SAFE}`, "reference_hash");
  assert.match(!r.ok ? r.reason : "", /standard base64/);
});

Deno.test("parseKeyId", () => {
  assert.deepEqual(parseKeyId("ed25519:abc_"), {
    ok: true,
    value: { algorithm: "ed25519", version: "abc_" },
  });
  assert.equal(isValidKeyId("ed25519:a_VERSION_1"), true);
  assert.equal(isValidKeyId("ed25519:"), false);
  assert.equal(isValidKeyId("ed25519"), false);
  assert.equal(isValidKeyId(":abc"), false);
  assert.equal(isValidKeyId("ed25519:ab-c"), false);
  assert.equal(isValidKeyId("ed25519:ab:c"), false);
  assert.equal(isValidKeyId("ED25519:abc"), false);
  assert.equal(isValidKeyId(`ed25519:${"a".repeat(250)}`), false);
});

Deno.test("device IDs and opaque IDs", () => {
  assert.equal(isValidDeviceId("ABCDEFGHIJ"), true);
  assert.equal(isValidDeviceId("my phone+/=é"), true, "client-chosen IDs are opaque");
  assert.equal(isValidDeviceId(""), false);
  assert.equal(isValidDeviceId("a\nb"), false);
  assert.equal(isValidDeviceId("x".repeat(256)), false);
  assert.equal(isValidOpaqueId("m1234.5_6~-"), true);
  assert.equal(isValidOpaqueId("x".repeat(255)), true);
  assert.equal(isValidOpaqueId("x".repeat(256)), false);
  assert.equal(isValidOpaqueId(""), false);
  assert.equal(isValidOpaqueId("a/b"), false);
  assert.equal(isValidOpaqueId("a b"), false);
});

Deno.test("parseBindHost: addresses for Deno.serve", () => {
  assert.deepEqual(parseBindHost("0.0.0.0"), {
    ok: true,
    value: { host: "0.0.0.0", kind: "ipv4" },
  });
  assert.deepEqual(parseBindHost("::"), { ok: true, value: { host: "::", kind: "ipv6" } });
  assert.deepEqual(parseBindHost("[::1]"), { ok: true, value: { host: "::1", kind: "ipv6" } });
  assert.deepEqual(parseBindHost("localhost"), {
    ok: true,
    value: { host: "localhost", kind: "dns" },
  });
  assert.equal(parseBindHost("local host").ok, false);
  assert.equal(parseBindHost("").ok, false);
});

Deno.test("requireValid: returns the value or throws M_INVALID_PARAM with the reason", () => {
  assert.equal(requireValid(parseUserId("@bob:hs")).localpart, "bob");
  assert.throws(
    () => requireValid(parseUserId("@:hs")),
    (e: unknown) =>
      e instanceof MatrixError && e.errcode === "M_INVALID_PARAM" && e.status === 400 &&
      /localpart is empty/.test(e.message),
  );
});
