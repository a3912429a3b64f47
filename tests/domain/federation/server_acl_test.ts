import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  hostOfServerName,
  isIpLiteralHost,
  parseServerAcl,
  RoomServerAcl,
  serverAllowedByAcl,
  serverAllowedByAclContent,
} from "../../../domain/federation/server_acl.ts";
import type { StoredEvent } from "../../../domain/ports/event_store.ts";

Deno.test("server ACL: no ACL event allows every server", () => {
  assert(serverAllowedByAclContent("evil.com", undefined));
  assert(serverAllowedByAclContent("1.2.3.4", undefined));
});

Deno.test("server ACL: deny beats allow, allow matches, anything else is denied", () => {
  const acl = { allow: ["*"], deny: ["evil.com", "*.evil.com"] };
  assert(!serverAllowedByAclContent("evil.com", acl));
  assert(!serverAllowedByAclContent("sub.evil.com", acl));
  assert(serverAllowedByAclContent("good.org", acl));
  assert(serverAllowedByAclContent("notevil.com", acl));
  const narrow = { allow: ["*.good.org"] };
  assert(serverAllowedByAclContent("a.good.org", narrow));
  assert(!serverAllowedByAclContent("good.org", narrow));
  assert(!serverAllowedByAclContent("other.org", narrow));
});

Deno.test("server ACL: a missing allow list denies every server, even with no deny list", () => {
  assert(!serverAllowedByAclContent("good.org", {}));
  assert(!serverAllowedByAclContent("good.org", { deny: [] }));
});

Deno.test("server ACL: the port is not considered", () => {
  const acl = { allow: ["*"], deny: ["evil.com"] };
  for (const name of ["evil.com", "evil.com:8448", "evil.com:1234"]) {
    assert(!serverAllowedByAclContent(name, acl), name);
  }
  assert(serverAllowedByAclContent("good.org:8448", { allow: ["good.org"] }));
  assert(!serverAllowedByAclContent("good.org:8448", { allow: ["good.org:8448"] }));
});

Deno.test("server ACL: matching is case-insensitive", () => {
  assert(!serverAllowedByAclContent("EVIL.com", { allow: ["*"], deny: ["evil.COM"] }));
  assert(serverAllowedByAclContent("Good.Org", { allow: ["good.org"] }));
});

Deno.test("server ACL: ? matches exactly one character; regex characters are literal", () => {
  const acl = { allow: ["server?.org"] };
  assert(serverAllowedByAclContent("server1.org", acl));
  assert(!serverAllowedByAclContent("server12.org", acl));
  assert(!serverAllowedByAclContent("serverXorg", { allow: ["server.org"] }));
});

Deno.test("server ACL: IP literals are denied only when allow_ip_literals is false", () => {
  const open = { allow: ["*"] };
  assert(serverAllowedByAclContent("1.2.3.4", open));
  assert(serverAllowedByAclContent("[::1]:8448", open));
  const closed = { allow: ["*"], allow_ip_literals: false };
  assert(!serverAllowedByAclContent("1.2.3.4", closed));
  assert(!serverAllowedByAclContent("1.2.3.4:8448", closed));
  assert(!serverAllowedByAclContent("[::1]", closed));
  assert(!serverAllowedByAclContent("[2001:db8::1]:443", closed));
  assert(serverAllowedByAclContent("1.2.3.4.example.org", closed));
  // Not a boolean: the default (true) holds.
  assert(serverAllowedByAclContent("1.2.3.4", { allow: ["*"], allow_ip_literals: "no" }));
});

Deno.test("server ACL: malformed fields take the spec's defaults; non-string globs never match", () => {
  assertEquals(parseServerAcl({ allow: "*", deny: 3, allow_ip_literals: null }), {
    allowIpLiterals: true,
    allow: [],
    deny: [],
  });
  assertEquals(parseServerAcl(null), { allowIpLiterals: true, allow: [], deny: [] });
  assert(serverAllowedByAcl("a.org", parseServerAcl({ allow: [1, "a.org"], deny: [null] })));
});

Deno.test("server ACL: host and IP literal helpers", () => {
  assertEquals(hostOfServerName("example.org:8448"), "example.org");
  assertEquals(hostOfServerName("example.org"), "example.org");
  assertEquals(hostOfServerName("[::1]:8448"), "[::1]");
  assertEquals(hostOfServerName("[::1]"), "[::1]");
  assert(isIpLiteralHost("127.0.0.1"));
  assert(isIpLiteralHost("[::1]"));
  assert(!isIpLiteralHost("256.0.0.1"));
  assert(!isIpLiteralHost("localhost"));
});

Deno.test("RoomServerAcl reads the room's current ACL and refuses a denied server with 403", async () => {
  const acl: StoredEvent = {
    eventId: "$acl",
    roomId: "!r:a.org",
    pdu: {
      type: "m.room.server_acl",
      state_key: "",
      content: { allow: ["*"], deny: ["evil.com"] },
    } as unknown as StoredEvent["pdu"],
    status: "accepted",
    position: 3,
    versionstamp: "00",
  };
  const store = {
    currentStateEventId: (roomId: string, type: string) =>
      Promise.resolve(roomId === "!r:a.org" && type === "m.room.server_acl" ? "$acl" : null),
    getEvent: (id: string) => Promise.resolve(id === "$acl" ? acl : null),
  };
  const rooms = new RoomServerAcl(store);
  assert(await rooms.allows("!r:a.org", "good.org"));
  assert(!(await rooms.allows("!r:a.org", "evil.com:8448")));
  assert(await rooms.allows("!other:a.org", "evil.com"));
  await rooms.assertAllowed("!r:a.org", "good.org");
  await assertRejects(() => rooms.assertAllowed("!r:a.org", "evil.com"), /server ACL/);
  const err = await rooms.assertAllowed("!r:a.org", "evil.com").catch((e) => e);
  assertEquals([err.errcode, err.status], ["M_FORBIDDEN", 403]);
});
