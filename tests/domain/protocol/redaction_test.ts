import assert from "node:assert/strict";
import type { Pdu } from "../../../domain/protocol/events.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { redactContent, redactEvent } from "../../../domain/protocol/redaction.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v, `room version ${n} is registered`);
  return v;
}

const VERSIONS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

// Every content key any room version protects, plus one no version does.
const SINK_CONTENT: JsonObject = {
  membership: "join",
  join_authorised_via_users_server: "@auth:hs",
  third_party_invite: { display_name: "x", signed: { token: "t", mxid: "@a:hs" } },
  creator: "@c:hs",
  room_version: "1",
  "m.federate": false,
  join_rule: "restricted",
  allow: [{ type: "m.room_membership", room_id: "!r:hs" }],
  ban: 50,
  events: { "m.room.name": 50 },
  events_default: 0,
  invite: 0,
  kick: 50,
  redact: 50,
  state_default: 50,
  users: { "@c:hs": 100 },
  users_default: 0,
  notifications: { room: 50 },
  aliases: ["#a:hs"],
  history_visibility: "shared",
  redacts: "$target",
  body: "secret",
};

// The spec's per-version content key lists, written out independently of the registry flags.
function expectedContentKeys(type: string, v: number): string[] | "all" {
  const pl = ["ban", "events", "events_default", "kick", "redact", "state_default", "users"];
  switch (type) {
    case "m.room.member":
      if (v >= 11) return ["membership", "join_authorised_via_users_server", "third_party_invite"];
      return v >= 9 ? ["membership", "join_authorised_via_users_server"] : ["membership"];
    case "m.room.create":
      return v >= 11 ? "all" : ["creator"];
    case "m.room.join_rules":
      return v >= 8 ? ["join_rule", "allow"] : ["join_rule"];
    case "m.room.power_levels":
      return v >= 11 ? [...pl, "users_default", "invite"] : [...pl, "users_default"];
    case "m.room.aliases":
      return v <= 5 ? ["aliases"] : [];
    case "m.room.history_visibility":
      return ["history_visibility"];
    case "m.room.redaction":
      return v >= 11 ? ["redacts"] : [];
    default:
      return [];
  }
}

function sinkEvent(type: string): Pdu {
  return {
    event_id: "$e:hs",
    room_id: "!r:hs",
    sender: "@c:hs",
    type,
    state_key: "",
    content: structuredClone(SINK_CONTENT),
    origin_server_ts: 1,
    depth: 2,
    prev_events: ["$p"],
    auth_events: ["$a"],
    hashes: { sha256: "h" },
    signatures: { hs: { "ed25519:1": "s" } },
    unsigned: { age_ts: 1, replaces_state: "$old" },
    origin: "hs",
    membership: "join",
    prev_state: [],
    redacts: "$target",
    age_ts: 1,
    extra_top_level: true,
  };
}

const TYPES = [
  "m.room.member",
  "m.room.create",
  "m.room.join_rules",
  "m.room.power_levels",
  "m.room.aliases",
  "m.room.history_visibility",
  "m.room.redaction",
  "m.room.message",
  "m.room.name",
];

Deno.test("content keys kept per event type in every room version 1-12", () => {
  for (const v of VERSIONS) {
    for (const type of TYPES) {
      const redacted = redactEvent(sinkEvent(type), version(v));
      const expected = expectedContentKeys(type, v);
      const keys = expected === "all" ? Object.keys(SINK_CONTENT) : expected;
      assert.deepEqual(
        Object.keys(redacted.content).sort(),
        [...keys].sort(),
        `v${v} ${type}`,
      );
      for (const key of keys) {
        const want = key === "third_party_invite" && type === "m.room.member"
          ? { signed: (SINK_CONTENT.third_party_invite as JsonObject).signed }
          : SINK_CONTENT[key];
        assert.deepEqual(redacted.content[key], want, `v${v} ${type}.${key}`);
      }
    }
  }
});

Deno.test("top-level keys: origin, membership, prev_state survive only before v11", () => {
  const always = [
    "auth_events",
    "content",
    "depth",
    "event_id",
    "hashes",
    "origin_server_ts",
    "prev_events",
    "room_id",
    "sender",
    "signatures",
    "state_key",
    "type",
  ];
  for (const v of VERSIONS) {
    const redacted = redactEvent(sinkEvent("m.room.message"), version(v)) as Record<
      string,
      unknown
    >;
    const expected = v >= 11 ? always : [...always, "membership", "origin", "prev_state"];
    assert.deepEqual(Object.keys(redacted).sort(), expected.sort(), `v${v}`);
    // unsigned, top-level redacts, age_ts and unknown keys go in every version.
    for (const gone of ["unsigned", "redacts", "age_ts", "extra_top_level"]) {
      assert.ok(!(gone in redacted), `v${v} drops ${gone}`);
    }
  }
});

Deno.test("v11+ member redaction keeps only the signed part of third_party_invite", () => {
  const v11 = version(11);
  const signed = { token: "t", mxid: "@a:hs", signatures: {} };
  const tpi = (third_party_invite: JsonObject[string]) =>
    redactContent("m.room.member", { membership: "invite", third_party_invite }, v11);
  assert.deepEqual(tpi({ display_name: "d", signed }), {
    membership: "invite",
    third_party_invite: { signed },
  });
  // Without `signed` the object stays (empty); a non-object is dropped, as Synapse does.
  assert.deepEqual(tpi({ display_name: "d" }), { membership: "invite", third_party_invite: {} });
  assert.deepEqual(tpi("junk"), { membership: "invite" });
  assert.deepEqual(
    redactContent(
      "m.room.member",
      { membership: "invite", third_party_invite: { signed } },
      version(10),
    ),
    { membership: "invite" },
  );
});

Deno.test("keys absent from the content stay absent; the input is not mutated", () => {
  const event = sinkEvent("m.room.power_levels");
  event.content = { users: {}, body: "x" };
  const before = structuredClone(event);
  const redacted = redactEvent(event, version(11));
  assert.deepEqual(redacted.content, { users: {} });
  assert.deepEqual(event, before);
  // A v11 create keeps its content, but as a copy.
  const create = sinkEvent("m.room.create");
  const redactedCreate = redactEvent(create, version(11));
  assert.notEqual(redactedCreate.content, create.content);
  assert.deepEqual(redactedCreate.content, create.content);
});

Deno.test("the spec's signed events redact to their redacted-for-signing forms under v1-10", () => {
  for (const vector of vectors.signed_events) {
    const signed = vector.signed as unknown as Pdu;
    for (const v of [1, 3, 4, 6, 10]) {
      const { signatures: _s, ...redacted } = redactEvent(signed, version(v));
      assert.deepEqual(redacted, vector.redacted_for_signing, `v${v}`);
    }
    // v11 no longer protects top-level origin, which these pre-v11 vectors carry.
    const { signatures: _s, ...v11 } = redactEvent(signed, version(11));
    const { origin: _o, ...withoutOrigin } = vector.redacted_for_signing;
    assert.deepEqual(v11, withoutOrigin);
  }
});
