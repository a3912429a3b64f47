/** Membership templates: laid out by the resident server, checked and signed by the requester. */
import assert from "node:assert/strict";
import {
  checkMembershipTemplate,
  membershipTemplate,
  signFromTemplate,
} from "../../../domain/federation/membership_template.ts";
import { verifyEventSignature } from "../../../domain/protocol/event_signing.ts";
import { checkContentHash } from "../../../domain/protocol/hashing.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../../domain/protocol/signing.ts";

const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:t");
const ROOM = "!room:a.test";
const USER = "@bob:b.test";

function template(versionId: string, extra: JsonObject = {}) {
  return membershipTemplate({
    version: roomVersion(versionId)!,
    roomId: ROOM,
    userId: USER,
    membership: "join",
    content: extra,
    prevEvents: [{ eventId: "$prev:a.test", referenceHash: "abc" }],
    depth: 7,
    authEvents: [{ eventId: "$create:a.test" }],
    origin: "a.test",
    originServerTs: 1000,
  });
}

Deno.test("membership template: v1/v2 cite events as tuples, later versions as IDs", () => {
  const v1 = template("1");
  assert.deepEqual(v1.prev_events, [["$prev:a.test", { sha256: "abc" }]]);
  assert.deepEqual(v1.auth_events, [["$create:a.test", {}]]);
  const v10 = template("10");
  assert.deepEqual(v10.prev_events, ["$prev:a.test"]);
  assert.equal(v10.sender, USER);
  assert.equal(v10.state_key, USER);
  assert.deepEqual(v10.content, { membership: "join" });
  assert.equal(v10.hashes, undefined);
  assert.equal(v10.signatures, undefined);
});

Deno.test("membership template: the requester checks what it was given", () => {
  const body = { room_version: "10", event: template("10") };
  const expected = { roomId: ROOM, userId: USER, membership: "join" as const };
  const checked = checkMembershipTemplate("a.test", body, expected);
  assert.equal(checked.version.id, "10");
  // No room_version: a server from before v2 rooms, so "1".
  const old = checkMembershipTemplate("a.test", { event: template("1") }, expected);
  assert.equal(old.version.id, "1");
  const refused = (b: unknown, code: string, status: number) =>
    assert.throws(
      () => checkMembershipTemplate("a.test", b as JsonObject, expected),
      (e) => e instanceof MatrixError && e.errcode === code && e.status === status,
    );
  refused({ room_version: "99", event: template("10") }, "M_UNSUPPORTED_ROOM_VERSION", 400);
  refused({ room_version: "10" }, "M_UNKNOWN", 502);
  refused(
    { room_version: "10", event: { ...template("10"), sender: "@eve:b.test" } },
    "M_UNKNOWN",
    502,
  );
  refused(
    { room_version: "10", event: { ...template("10"), content: { membership: "leave" } } },
    "M_UNKNOWN",
    502,
  );
  refused(
    { room_version: "10", event: { ...template("10"), room_id: "!other:a.test" } },
    "M_UNKNOWN",
    502,
  );
  refused({ room_version: "10", event: { ...template("10"), depth: -1 } }, "M_UNKNOWN", 502);
  // v1 tuples where a v10 room wants IDs.
  refused({ room_version: "10", event: template("1") }, "M_UNKNOWN", 502);
});

Deno.test("membership template: the signed event keeps the template and the authoriser", async () => {
  for (const versionId of ["1", "10", "12"]) {
    const version = roomVersion(versionId)!;
    const t = template(versionId, { join_authorised_via_users_server: "@alice:a.test" });
    const built = await signFromTemplate({
      version,
      template: t,
      serverName: "b.test",
      signingKey: key,
      originServerTs: 5000,
      // The client's keys cannot replace the membership or the authoriser.
      content: {
        displayname: "Bob",
        membership: "leave",
        join_authorised_via_users_server: "@mallory:b.test",
      },
    });
    assert.equal(built.pdu.content.membership, "join");
    assert.equal(built.pdu.content.displayname, "Bob");
    assert.equal(built.pdu.content.join_authorised_via_users_server, "@alice:a.test");
    assert.equal(built.pdu.depth, 7);
    assert.deepEqual(built.pdu.prev_events, t.prev_events);
    assert.equal(built.pdu.origin_server_ts, 5000);
    assert.ok(checkContentHash(built.pdu, version));
    assert.ok(
      await verifyEventSignature(built.pdu, version, "b.test", key.keyId, key.publicKey),
    );
    if (versionId === "1") assert.match(built.eventId, /^\$[A-Za-z0-9]+:b\.test$/);
    else assert.match(built.eventId, /^\$[A-Za-z0-9_-]{43}$/);
  }
});

Deno.test("membership template: a template whose content is too large is refused", async () => {
  const version = roomVersion("10")!;
  await assert.rejects(
    signFromTemplate({
      version,
      template: template("10"),
      serverName: "b.test",
      signingKey: key,
      originServerTs: 1,
      content: { displayname: "x".repeat(70_000) },
    }),
    (e) => e instanceof MatrixError && e.errcode === "M_TOO_LARGE",
  );
});
