import assert from "node:assert/strict";
import {
  type DiscoveryLookups,
  InvalidServerName,
  orderSrv,
  resolveServerName,
  type SrvRecord,
  WELL_KNOWN_DEFAULT_MS,
  WELL_KNOWN_DOWN_MS,
  WELL_KNOWN_ERROR_MS,
  WELL_KNOWN_MAX_MS,
  WELL_KNOWN_MIN_MS,
  wellKnownAfterFailure,
  wellKnownLifetimeMs,
} from "../../../domain/federation/server_discovery.ts";
import type { JsonValue } from "../../../domain/protocol/json.ts";

/** Look-ups from fixed tables, recording what was asked. */
function fakeLookups(
  wellKnown: Record<string, JsonValue> = {},
  srv: Record<string, SrvRecord[]> = {},
): DiscoveryLookups & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    wellKnown(host) {
      asked.push(`wk:${host}`);
      return Promise.resolve(wellKnown[host]);
    },
    srv(name) {
      asked.push(`srv:${name}`);
      return Promise.resolve(srv[name] ?? []);
    },
  };
}

const rec = (target: string, port: number, priority = 10, weight = 5): SrvRecord => ({
  target,
  port,
  priority,
  weight,
});

Deno.test("1. IP literals: the address, the port or 8448, no look-ups", async () => {
  const lookups = fakeLookups({ "1.2.3.4": { "m.server": "elsewhere:1" } });
  assert.deepEqual(await resolveServerName("1.2.3.4", lookups), [
    { connectHost: "1.2.3.4", port: 8448, tlsName: "1.2.3.4", hostHeader: "1.2.3.4" },
  ]);
  assert.deepEqual(await resolveServerName("1.2.3.4:8000", lookups), [
    { connectHost: "1.2.3.4", port: 8000, tlsName: "1.2.3.4", hostHeader: "1.2.3.4:8000" },
  ]);
  assert.deepEqual(await resolveServerName("[2001:db8::1]:9000", lookups), [
    {
      connectHost: "2001:db8::1",
      port: 9000,
      tlsName: "2001:db8::1",
      hostHeader: "[2001:db8::1]:9000",
    },
  ]);
  assert.deepEqual(await resolveServerName("[::1]", lookups), [
    { connectHost: "::1", port: 8448, tlsName: "::1", hostHeader: "[::1]" },
  ]);
  assert.deepEqual(lookups.asked, []);
});

Deno.test("2. a DNS name with an explicit port: that name and port, no well-known or SRV", async () => {
  const lookups = fakeLookups(
    { "example.org": { "m.server": "other.example:1" } },
    { "_matrix-fed._tcp.example.org": [rec("srv.example", 1)] },
  );
  assert.deepEqual(await resolveServerName("example.org:8008", lookups), [
    {
      connectHost: "example.org",
      port: 8008,
      tlsName: "example.org",
      hostHeader: "example.org:8008",
    },
  ]);
  assert.deepEqual(lookups.asked, []);
});

Deno.test("3.1 well-known delegating to an IP literal, with and without a port", async () => {
  const lookups = fakeLookups({
    "a.example": { "m.server": "10.0.0.1" },
    "b.example": { "m.server": "[2001:db8::2]:8449" },
  });
  assert.deepEqual(await resolveServerName("a.example", lookups), [
    { connectHost: "10.0.0.1", port: 8448, tlsName: "10.0.0.1", hostHeader: "10.0.0.1" },
  ]);
  assert.deepEqual(await resolveServerName("b.example", lookups), [
    {
      connectHost: "2001:db8::2",
      port: 8449,
      tlsName: "2001:db8::2",
      hostHeader: "[2001:db8::2]:8449",
    },
  ]);
  assert.deepEqual(lookups.asked, ["wk:a.example", "wk:b.example"]);
});

Deno.test("3.2 well-known delegating to a name with a port: no SRV", async () => {
  const lookups = fakeLookups({ "example.org": { "m.server": "matrix.example.org:443" } });
  assert.deepEqual(await resolveServerName("example.org", lookups), [
    {
      connectHost: "matrix.example.org",
      port: 443,
      tlsName: "matrix.example.org",
      hostHeader: "matrix.example.org:443",
    },
  ]);
  assert.deepEqual(lookups.asked, ["wk:example.org"]);
});

Deno.test("3.3 well-known to a name without a port: SRV _matrix-fed of the delegated name", async () => {
  const lookups = fakeLookups(
    { "example.org": { "m.server": "matrix.example.org" } },
    {
      "_matrix-fed._tcp.matrix.example.org": [
        rec("b.hosts.example.", 8443, 20),
        rec("a.hosts.example.", 443, 10),
      ],
      "_matrix._tcp.matrix.example.org": [rec("old.example", 1)],
    },
  );
  assert.deepEqual(await resolveServerName("example.org", lookups), [
    {
      connectHost: "a.hosts.example",
      port: 443,
      tlsName: "matrix.example.org",
      hostHeader: "matrix.example.org",
    },
    {
      connectHost: "b.hosts.example",
      port: 8443,
      tlsName: "matrix.example.org",
      hostHeader: "matrix.example.org",
    },
  ]);
  assert.deepEqual(lookups.asked, ["wk:example.org", "srv:_matrix-fed._tcp.matrix.example.org"]);
});

Deno.test("3.4 then the deprecated _matrix._tcp of the delegated name; 3.5 else port 8448", async () => {
  const lookups = fakeLookups(
    {
      "example.org": { "m.server": "matrix.example.org" },
      "plain.org": { "m.server": "m.plain.org" },
    },
    { "_matrix._tcp.matrix.example.org": [rec("old.example", 8888)] },
  );
  assert.deepEqual(await resolveServerName("example.org", lookups), [
    {
      connectHost: "old.example",
      port: 8888,
      tlsName: "matrix.example.org",
      hostHeader: "matrix.example.org",
    },
  ]);
  assert.deepEqual(await resolveServerName("plain.org", lookups), [
    { connectHost: "m.plain.org", port: 8448, tlsName: "m.plain.org", hostHeader: "m.plain.org" },
  ]);
  assert.deepEqual(lookups.asked, [
    "wk:example.org",
    "srv:_matrix-fed._tcp.matrix.example.org",
    "srv:_matrix._tcp.matrix.example.org",
    "wk:plain.org",
    "srv:_matrix-fed._tcp.m.plain.org",
    "srv:_matrix._tcp.m.plain.org",
  ]);
});

Deno.test("4-6. no valid well-known: SRV _matrix-fed, then _matrix, then the name on 8448", async () => {
  const lookups = fakeLookups(
    {
      // Invalid documents are ignored: each falls through to SRV.
      "fed.example": { "m.server": 7 },
      "legacy.example": ["m.server"],
      "bare.example": { "m.server": "not a server name!" },
    },
    {
      "_matrix-fed._tcp.fed.example": [rec("host.fed.example", 8000)],
      "_matrix._tcp.fed.example": [rec("ignored.example", 1)],
      "_matrix._tcp.legacy.example": [rec("host.legacy.example", 8001)],
    },
  );
  assert.deepEqual(await resolveServerName("fed.example", lookups), [
    {
      connectHost: "host.fed.example",
      port: 8000,
      tlsName: "fed.example",
      hostHeader: "fed.example",
    },
  ]);
  assert.deepEqual(await resolveServerName("legacy.example", lookups), [
    {
      connectHost: "host.legacy.example",
      port: 8001,
      tlsName: "legacy.example",
      hostHeader: "legacy.example",
    },
  ]);
  assert.deepEqual(await resolveServerName("bare.example", lookups), [
    {
      connectHost: "bare.example",
      port: 8448,
      tlsName: "bare.example",
      hostHeader: "bare.example",
    },
  ]);
  assert.deepEqual(await resolveServerName("none.example", lookups), [
    {
      connectHost: "none.example",
      port: 8448,
      tlsName: "none.example",
      hostHeader: "none.example",
    },
  ]);
});

Deno.test("invalid server names are refused before any look-up", async () => {
  const lookups = fakeLookups();
  for (const bad of ["", "a b", "host:0", "host:99999", "::1", "[zz]", "a:b:c"]) {
    await assert.rejects(resolveServerName(bad, lookups), InvalidServerName, bad);
  }
  assert.deepEqual(lookups.asked, []);
});

Deno.test("SRV ordering: priority, then weight; '.' targets mean no service", () => {
  assert.deepEqual(
    orderSrv([rec("c", 3, 20, 0), rec("a", 1, 10, 1), rec("b", 2, 10, 9), rec(".", 0, 0, 0)]).map((
      r,
    ) => r.target),
    ["b", "a", "c"],
  );
  assert.deepEqual(orderSrv([rec(".", 0)]), []);
});

Deno.test("well-known lifetimes: headers bounded to [5 min, 48 h], 24 h default", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(wellKnownLifetimeMs({}, now), WELL_KNOWN_DEFAULT_MS);
  assert.equal(wellKnownLifetimeMs({ cacheControl: "public, max-age=3600" }, now), 3600_000);
  assert.equal(wellKnownLifetimeMs({ cacheControl: "max-age=10" }, now), WELL_KNOWN_MIN_MS);
  assert.equal(wellKnownLifetimeMs({ cacheControl: "max-age=999999999" }, now), WELL_KNOWN_MAX_MS);
  assert.equal(
    wellKnownLifetimeMs({ cacheControl: "no-store, max-age=3600" }, now),
    WELL_KNOWN_MIN_MS,
  );
  assert.equal(wellKnownLifetimeMs({ cacheControl: 'MAX-AGE="7200"' }, now), 7200_000);
  // Cache-Control wins over Expires.
  assert.equal(
    wellKnownLifetimeMs(
      { cacheControl: "max-age=3600", expires: "Thu, 01 Jan 2026 10:00:00 GMT" },
      now,
    ),
    3600_000,
  );
  assert.equal(
    wellKnownLifetimeMs({ expires: "Thu, 01 Jan 2026 10:00:00 GMT" }, now),
    10 * 3600_000,
  );
  assert.equal(wellKnownLifetimeMs({ expires: "0" }, now), WELL_KNOWN_MIN_MS);
  assert.equal(wellKnownLifetimeMs({ cacheControl: "max-age=abc" }, now), WELL_KNOWN_DEFAULT_MS);
});

Deno.test("well-known failures: an hour of 'none', or 2 more minutes of a recent valid answer", () => {
  const now = 10 * 3600_000;
  const doc = { "m.server": "m.example:443" };
  // Nothing before, or a permanent failure (4xx, invalid): none for an hour.
  assert.deepEqual(wellKnownAfterFailure(undefined, true, now), {
    document: null,
    lifetimeMs: WELL_KNOWN_ERROR_MS,
  });
  assert.deepEqual(wellKnownAfterFailure({ document: doc, validUntil: now - 1 }, false, now), {
    document: null,
    lifetimeMs: WELL_KNOWN_ERROR_MS,
  });
  // A temporary failure within 2 hours of a valid answer's expiry keeps it 2 minutes.
  assert.deepEqual(
    wellKnownAfterFailure({ document: doc, validUntil: now - 3600_000 }, true, now),
    {
      document: doc,
      lifetimeMs: WELL_KNOWN_DOWN_MS,
    },
  );
  // A document never seen valid, long after, or after an earlier failure: none for an hour.
  assert.deepEqual(wellKnownAfterFailure({ document: doc }, true, now), {
    document: null,
    lifetimeMs: WELL_KNOWN_ERROR_MS,
  });
  assert.deepEqual(
    wellKnownAfterFailure({ document: doc, validUntil: now - 3 * 3600_000 }, true, now),
    { document: null, lifetimeMs: WELL_KNOWN_ERROR_MS },
  );
  assert.deepEqual(wellKnownAfterFailure({ document: null, validUntil: now - 1 }, true, now), {
    document: null,
    lifetimeMs: WELL_KNOWN_ERROR_MS,
  });
});
