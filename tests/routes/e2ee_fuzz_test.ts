/**
 * Table-driven bad input against every E2EE endpoint (keys, cross-signing, key changes,
 * send-to-device, key backup), with a valid session: wrong types, nulls, huge strings, deep
 * nesting, arrays where objects go, invalid user/room/device IDs, non-numeric backup versions,
 * malformed sync tokens, missing and unknown access tokens. Each case is one valid request with
 * one thing broken, so the refusal is about that thing. Every case must get a Matrix error
 * (`errcode` + `error`) with a 4xx status (or, for /keys/signatures/upload, a per-key failure as
 * the spec asks), never a 500; a refused request must write nothing; and the server must still
 * serve the whole E2EE flow afterwards.
 */
import { assert, assertEquals } from "../assert.ts";
import { newCrossSigning, newKeyPair } from "../domain/e2ee/cross_signing_fixtures.ts";
import { newTestDevice, type TestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
const ALG = "signed_curve25519";
const BACKUP_ALG = "m.megolm_backup.v1.curve25519-aes-sha2";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/**
 * What a case must get:
 * - `4xx`: a 4xx Matrix error, and nothing written (401 UIA challenges may store their session);
 * - `failure`: 200 with `failures[user][key]` holding a Matrix error (signature uploads);
 * - `any`: the input is odd but allowed (e.g. opaque content), so only "no 5xx" is asserted,
 *   and a 4xx must still be a Matrix error.
 */
type Expect = "4xx" | "failure" | "any";

interface FuzzCase {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  /** Overrides the session: "none" sends no token, otherwise this token. */
  token?: string;
  expect: Expect;
  /** For `failure`: where the failure must be reported. */
  failureAt?: [userId: string, keyId: string];
}

/** Text longer than any ID or name limit, well under the body limit. */
const HUGE = "x".repeat(300_000);
/** Nesting far beyond any sane JSON depth, still under 1 MiB of text. */
const DEEP_ARRAY: unknown = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
const DEEP_OBJECT: unknown = JSON.parse('{"a":'.repeat(50_000) + "1" + "}".repeat(50_000));

/** Values that are not a JSON object (or are one nested absurdly deep). */
const NOT_OBJECT: unknown[] = [null, 0, -1, 1.5, true, "", "x", HUGE, [], [{}], DEEP_ARRAY];
/** Values that are not a string. */
const NOT_STRING: unknown[] = [null, 0, 1.5, true, {}, [], ["x"], DEEP_OBJECT];
/** Values that are not a list of strings. */
const NOT_STRING_LIST: unknown[] = [null, 0, "x", {}, [1], [null], [{}], [[]], DEEP_ARRAY];
/** Values that are not a non-negative integer. */
const NOT_COUNT: unknown[] = [null, "1", true, {}, [], -1, 1.5, 2 ** 60, DEEP_ARRAY];
/** Values that are not a boolean. */
const NOT_BOOLEAN: unknown[] = [null, 0, 1, "true", {}, []];
/** Values that are not a number (timeouts). */
const NOT_NUMBER: unknown[] = [null, "10", true, {}, [], DEEP_ARRAY];

/** Strings that are not user IDs. */
const BAD_USER_IDS = [
  "",
  "alice",
  "@",
  "@alice",
  "@alice:",
  "@:example.org:8448",
  "@al ice:example.org:8448",
  `@${"a".repeat(300)}:example.org:8448`,
];
/** Strings that are not device IDs. */
const BAD_DEVICE_IDS = ["", "a\u0000b", "a\u001fb", "\ud800x", "d".repeat(256), HUGE];
/** Strings that are not room IDs. */
const BAD_ROOM_IDS = ["room", "!", "!abc", "#alias:example.org", `!${"r".repeat(300)}:x`];
/** Backup versions that name nothing we could have issued. */
const BAD_VERSIONS = ["abc", "0", "-1", "1.5", "01", "1e3", " 1", "99999999999999999999", HUGE];
/** Strings that are not sync tokens. */
const BAD_SYNC_TOKENS = ["", "s", "s123", "t12", "sXYZ", `s${"0".repeat(19)}`, HUGE];

/** `template` with the value at `path` replaced (a deep copy; `undefined` deletes). */
function withValue(template: unknown, path: readonly string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = structuredClone(template) as Record<string, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>;
  const last = path[path.length - 1];
  if (value === undefined) delete at[last];
  else Object.defineProperty(at, last, { value, enumerable: true, writable: true });
  return copy;
}

/** `template` with the object at `path` holding one more (or only this) entry. */
function withEntry(
  template: unknown,
  path: readonly string[],
  key: string,
  value: unknown,
  only = true,
): unknown {
  const copy = structuredClone(template) as Record<string, unknown>;
  let at = copy;
  for (const k of path) at = at[k] as Record<string, unknown>;
  if (only) { for (const k of Object.keys(at)) delete at[k]; }
  at[key] = value;
  return copy;
}

/** One case per value, replacing the value at `path`. */
function mutations(
  base: Omit<FuzzCase, "name" | "body" | "expect">,
  template: unknown,
  path: readonly string[],
  values: readonly unknown[],
  expect: Expect = "4xx",
): FuzzCase[] {
  return values.map((value) => ({
    ...base,
    name: `${base.method} ${base.path.split("?")[0]} ${path.join(".")} = ${describe(value)}`,
    body: withValue(template, path, value),
    expect,
  }));
}

function describe(value: unknown): string {
  if (value === DEEP_ARRAY) return "<deep array>";
  if (value === DEEP_OBJECT) return "<deep object>";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...(${text.length})` : text;
}

interface Fixture {
  server: Server;
  alice: RegisteredUser;
  bob: RegisteredUser;
  aliceDevice: TestDevice;
  roomId: string;
}

async function setup(): Promise<Fixture> {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  const alice = await registerUser(server, "alice", "correct horse");
  const bob = await registerUser(server, "bob", "battery staple");
  const aliceDevice = await newTestDevice(alice.userId, alice.deviceId);
  const ok = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await server.request(method, V3 + path, { token, body });
    assertEquals(res.status, 200, `${method} ${path}: ${JSON.stringify(res.body)}`);
    return res.body;
  };
  await ok("POST", "/keys/upload", alice.accessToken, {
    device_keys: await aliceDevice.deviceKeys(),
    one_time_keys: await aliceDevice.oneTimeKeys(5),
    fallback_keys: await aliceDevice.fallbackKey("FB"),
  });
  const cross = await newCrossSigning(alice.userId);
  await ok("POST", "/keys/device_signing/upload", alice.accessToken, {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  });
  await ok("POST", "/room_keys/version", alice.accessToken, {
    algorithm: BACKUP_ALG,
    auth_data: { public_key: "abcdefg", signatures: {} },
  });
  const created = await ok("POST", "/createRoom", alice.accessToken, { preset: "public_chat" });
  return { server, alice, bob, aliceDevice, roomId: created.room_id };
}

async function keyUploadCases(f: Fixture): Promise<FuzzCase[]> {
  const { alice, aliceDevice } = f;
  const template = {
    device_keys: await aliceDevice.deviceKeys(),
    one_time_keys: await aliceDevice.oneTimeKeys(2, "FUZZ"),
    fallback_keys: await aliceDevice.fallbackKey("FB2"),
  };
  const otk = Object.keys(template.one_time_keys)[0];
  const base = { method: "POST", path: "/keys/upload" };
  const badKeyNames = [
    "nocolon",
    ":noalgorithm",
    `${ALG}:`,
    `${"a".repeat(65)}:id`,
    `${ALG}:${"k".repeat(65)}`,
    `${ALG}:sp ace`,
    `al\u0000g:id`,
  ];
  const badKeys = [
    null,
    0,
    true,
    [],
    {},
    { key: 1 },
    { key: "k", signatures: "s" },
    {
      key: "k",
      signatures: { [alice.userId]: { x: 1 } },
    },
    { key: "k", signatures: {}, extra: DEEP_ARRAY },
    { key: "k", signatures: {}, big: HUGE },
  ];
  const forged = await newTestDevice(alice.userId, alice.deviceId);
  return [
    ...mutations(base, template, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...mutations(base, template, ["device_keys"], NOT_OBJECT),
    ...mutations(base, template, ["device_keys", "user_id"], [
      ...NOT_STRING,
      f.bob.userId,
      "not-a-user",
    ]),
    ...mutations(base, template, ["device_keys", "device_id"], [...NOT_STRING, "OTHERDEVICE"]),
    ...mutations(base, template, ["device_keys", "algorithms"], [
      ...NOT_STRING_LIST,
      Array.from({ length: 65 }, (_, i) => `alg${i}`),
      ["with:colon"],
    ]),
    ...mutations(base, template, ["device_keys", "keys"], [...NOT_OBJECT, {}, { x: 1 }]),
    ...mutations(base, template, ["device_keys", "keys", `ed25519:${alice.deviceId}`], [
      ...NOT_STRING,
      "not base64 !!",
      "AAAA",
      forged.ed25519,
    ]),
    ...mutations(base, template, ["device_keys", "signatures"], [...NOT_OBJECT, {}, {
      [alice.userId]: "sig",
    }]),
    ...mutations(base, template, ["device_keys", "unsigned"], [DEEP_ARRAY], "any"),
    ...mutations(base, template, ["device_keys", "extra"], [DEEP_OBJECT, 1.5, 2 ** 60]),
    ...mutations(base, template, ["one_time_keys"], NOT_OBJECT),
    ...mutations(base, template, ["one_time_keys", otk], badKeys),
    ...badKeyNames.map((name) => ({
      ...base,
      name: `POST /keys/upload one_time_keys name ${describe(name)}`,
      body: withEntry(template, ["one_time_keys"], name, { key: "k", signatures: {} }, false),
      expect: "4xx" as const,
    })),
    {
      ...base,
      name: "POST /keys/upload over 1000 one-time keys",
      body: {
        one_time_keys: Object.fromEntries(
          Array.from({ length: 1001 }, (_, i) => [`${ALG}:K${i}`, "key"]),
        ),
      },
      expect: "4xx",
    },
    ...mutations(base, template, ["fallback_keys"], NOT_OBJECT),
    ...mutations(base, template, ["fallback_keys", `${ALG}:FB2`], badKeys),
    {
      ...base,
      name: "POST /keys/upload two fallback keys of one algorithm",
      body: withEntry(
        template,
        ["fallback_keys"],
        `${ALG}:FB3`,
        { key: "k", signatures: {} },
        false,
      ),
      expect: "4xx",
    },
    ...mutations(base, template, ["org.matrix.msc2732.fallback_keys"], NOT_OBJECT),
    // The legacy path form must name the session's own device.
    ...[f.bob.deviceId, "OTHER", "%00"].map((device) => ({
      method: "POST",
      path: `/keys/upload/${encodeURIComponent(device)}`,
      name: `POST /keys/upload/{device} naming ${describe(device)}`,
      body: template,
      expect: "4xx" as const,
    })),
    ...mutations(
      { method: "POST", path: `/keys/upload/${alice.deviceId}` },
      template,
      ["one_time_keys"],
      NOT_OBJECT,
    ),
  ];
}

function keyQueryAndClaimCases(f: Fixture): FuzzCase[] {
  const { alice } = f;
  const query = { device_keys: { [alice.userId]: [alice.deviceId] }, timeout: 10_000 };
  const claim = {
    one_time_keys: { [alice.userId]: { [alice.deviceId]: ALG } },
    timeout: 10_000,
  };
  const q = { method: "POST", path: "/keys/query" };
  const c = { method: "POST", path: "/keys/claim" };
  return [
    ...mutations(q, query, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...mutations(q, query, ["device_keys"], [...NOT_OBJECT, undefined]),
    ...mutations(q, query, ["device_keys", alice.userId], NOT_STRING_LIST),
    ...mutations(q, query, ["timeout"], NOT_NUMBER),
    ...BAD_USER_IDS.map((userId) => ({
      ...q,
      name: `POST /keys/query user ${describe(userId)}`,
      body: withEntry(query, ["device_keys"], userId, []),
      expect: "4xx" as const,
    })),
    ...BAD_DEVICE_IDS.map((deviceId) => ({
      ...q,
      name: `POST /keys/query device ${describe(deviceId)}`,
      body: withValue(query, ["device_keys", alice.userId], [deviceId]),
      expect: "4xx" as const,
    })),
    ...mutations(c, claim, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...mutations(c, claim, ["one_time_keys"], [...NOT_OBJECT, undefined]),
    ...mutations(c, claim, ["one_time_keys", alice.userId], NOT_OBJECT),
    ...mutations(c, claim, ["one_time_keys", alice.userId, alice.deviceId], [
      ...NOT_STRING,
      "",
      "with:colon",
      "a".repeat(65),
      HUGE,
    ]),
    ...mutations(c, claim, ["timeout"], NOT_NUMBER),
    ...BAD_USER_IDS.map((userId) => ({
      ...c,
      name: `POST /keys/claim user ${describe(userId)}`,
      body: withEntry(claim, ["one_time_keys"], userId, { DEVICE: ALG }),
      expect: "4xx" as const,
    })),
    ...BAD_DEVICE_IDS.map((deviceId) => ({
      ...c,
      name: `POST /keys/claim device ${describe(deviceId)}`,
      body: withValue(claim, ["one_time_keys", alice.userId], { [deviceId]: ALG }),
      expect: "4xx" as const,
    })),
    // An algorithm nobody uploaded is a claim that finds nothing, not an error.
    ...mutations(c, claim, ["one_time_keys", alice.userId, alice.deviceId], ["m.unknown"], "any"),
  ];
}

function keyChangesCases(): FuzzCase[] {
  const valid = "s00000000000000000000";
  const path = (from?: string, to?: string) => {
    const params = new URLSearchParams();
    if (from !== undefined) params.set("from", from);
    if (to !== undefined) params.set("to", to);
    return `/keys/changes?${params}`;
  };
  return [
    { name: "GET /keys/changes without from", method: "GET", path: path(undefined, valid) },
    { name: "GET /keys/changes without to", method: "GET", path: path(valid) },
    ...BAD_SYNC_TOKENS.flatMap((token) => [
      {
        name: `GET /keys/changes from=${describe(token)}`,
        method: "GET",
        path: path(token, valid),
      },
      { name: `GET /keys/changes to=${describe(token)}`, method: "GET", path: path(valid, token) },
    ]),
  ].map((c) => ({ ...c, expect: "4xx" as const }));
}

async function crossSigningCases(f: Fixture): Promise<FuzzCase[]> {
  const { alice, bob, aliceDevice } = f;
  // A new set of keys: storing it would need UIA, so every refusal below comes before that.
  const cross = await newCrossSigning(alice.userId);
  const template = {
    master_key: cross.upload.master,
    self_signing_key: cross.upload.self_signing,
    user_signing_key: cross.upload.user_signing,
  };
  const stranger = await newKeyPair();
  const base = { method: "POST", path: "/keys/device_signing/upload" };
  const keyCases = (field: "master_key" | "self_signing_key") => [
    ...mutations(base, template, [field], NOT_OBJECT.filter((v) => v !== null)),
    ...mutations(base, template, [field, "user_id"], [...NOT_STRING, bob.userId]),
    ...mutations(base, template, [field, "usage"], [
      ...NOT_STRING_LIST,
      "master",
      [],
      ["master", "self_signing"],
      ["user_signing"],
    ]),
    ...mutations(base, template, [field, "keys"], [
      ...NOT_OBJECT,
      {},
      { "ed25519:abc": "abc" },
      { [`curve25519:${stranger.publicKey}`]: stranger.publicKey },
      { [`ed25519:${stranger.publicKey}`]: "other" },
      {
        [`ed25519:${stranger.publicKey}`]: stranger.publicKey,
        [`ed25519:${cross.master.publicKey}`]: cross.master.publicKey,
      },
    ]),
    ...mutations(base, template, [field, "signatures"], [
      ...NOT_OBJECT.filter((v) => v !== null),
      { [alice.userId]: "sig" },
      { [alice.userId]: { k: 1 } },
    ]),
    ...mutations(base, template, [field, "extra"], [1.5, DEEP_OBJECT, HUGE]),
  ];
  const signed = await aliceDevice.deviceKeys();
  const sigBase = { method: "POST", path: "/keys/signatures/upload" };
  const sigTemplate = { [alice.userId]: { [alice.deviceId]: signed } };
  const failureCases = (values: unknown[], keyId = alice.deviceId, userId = alice.userId) =>
    values.map((value) => ({
      ...sigBase,
      name: `POST /keys/signatures/upload ${userId} ${keyId} = ${describe(value)}`,
      body: { [userId]: { [keyId]: value } },
      expect: "failure" as const,
      failureAt: [userId, keyId] as [string, string],
    }));
  return [
    ...mutations(base, template, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...keyCases("master_key"),
    ...keyCases("self_signing_key"),
    // Signed by a key that is not the master key, or not signed at all.
    ...mutations(base, template, ["self_signing_key"], [
      await stranger.sign(
        { user_id: alice.userId, usage: ["self_signing"], keys: cross.upload.self_signing.keys },
        alice.userId,
        `ed25519:${cross.master.publicKey}`,
      ),
    ]),
    ...mutations(base, template, ["user_signing_key", "signatures"], [{}]),
    ...mutations(base, template, ["auth"], [...NOT_OBJECT, { type: "m.login.password" }]),
    // The signature upload body itself.
    ...mutations(sigBase, sigTemplate, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...mutations(sigBase, sigTemplate, [alice.userId], NOT_OBJECT),
    // Per-key problems are failures in a 200, as the spec's response shape has it.
    ...failureCases([null, 0, "x", [], DEEP_ARRAY, DEEP_OBJECT, {}]),
    ...failureCases([{ ...signed, algorithms: ["changed"] }]),
    ...failureCases([{ ...signed, signatures: { [alice.userId]: { "ed25519:nokey": "sig" } } }]),
    ...failureCases([signed], "NOSUCHDEVICE"),
    ...failureCases([signed], "d".repeat(5000)),
    ...BAD_USER_IDS.filter((u) => u !== "").flatMap((u) => failureCases([signed], "KEY", u)),
    ...failureCases([cross.upload.master], cross.master.publicKey, bob.userId),
    ...failureCases([signed], "KEY", "@someone:elsewhere.example"),
  ];
}

function toDeviceCases(f: Fixture): FuzzCase[] {
  const { alice } = f;
  let txn = 0;
  const path = () => `/sendToDevice/m.fuzz/fuzz${txn++}`;
  const template = { messages: { [alice.userId]: { [alice.deviceId]: { body: "hi" } } } };
  const cases: FuzzCase[] = [
    ...mutations({ method: "PUT", path: "/sendToDevice/m.fuzz/{txn}" }, template, [], NOT_OBJECT),
    ...mutations({ method: "PUT", path: "/sendToDevice/m.fuzz/{txn}" }, template, ["messages"], [
      ...NOT_OBJECT,
      undefined,
    ]),
    ...mutations({ method: "PUT", path: "/sendToDevice/m.fuzz/{txn}" }, template, [
      "messages",
      alice.userId,
    ], NOT_OBJECT),
    ...mutations(
      { method: "PUT", path: "/sendToDevice/m.fuzz/{txn}" },
      template,
      ["messages", alice.userId, alice.deviceId],
      [null, 0, "x", [], true, { big: "x".repeat(70_000) }],
    ),
    ...BAD_USER_IDS.map((userId) => ({
      method: "PUT",
      path: "/sendToDevice/m.fuzz/{txn}",
      name: `PUT /sendToDevice user ${describe(userId)}`,
      body: withEntry(template, ["messages"], userId, { DEVICE: {} }),
      expect: "4xx" as const,
    })),
    ...BAD_DEVICE_IDS.map((deviceId) => ({
      method: "PUT",
      path: "/sendToDevice/m.fuzz/{txn}",
      name: `PUT /sendToDevice device ${describe(deviceId)}`,
      body: withValue(template, ["messages", alice.userId], { [deviceId]: {} }),
      expect: "4xx" as const,
    })),
  ].map((c) => ({ ...c, path: path() }));
  return [
    ...cases,
    {
      name: "PUT /sendToDevice event type over 255 characters",
      method: "PUT",
      path: `/sendToDevice/${"t".repeat(256)}/fuzz-long-type`,
      body: template,
      expect: "4xx",
    },
    {
      name: "PUT /sendToDevice transaction ID over 255 characters",
      method: "PUT",
      path: `/sendToDevice/m.fuzz/${"n".repeat(256)}`,
      body: template,
      expect: "4xx",
    },
    {
      name: "PUT /sendToDevice content nested deeply (opaque to the server)",
      method: "PUT",
      path: path(),
      body: withValue(template, ["messages", alice.userId, alice.deviceId], { deep: DEEP_OBJECT }),
      expect: "any",
    },
  ];
}

function backupCases(f: Fixture): FuzzCase[] {
  const room = encodeURIComponent(f.roomId);
  const version = { algorithm: BACKUP_ALG, auth_data: { public_key: "abcdefg" } };
  const key = {
    first_message_index: 0,
    forwarded_count: 0,
    is_verified: false,
    session_data: { ciphertext: "c", mac: "m", ephemeral: "e" },
  };
  const all = { rooms: { [f.roomId]: { sessions: { S1: key } } } };
  const post = { method: "POST", path: "/room_keys/version" };
  const put = { method: "PUT", path: "/room_keys/version/1" };
  const keysPaths = (v: string) => [
    `/room_keys/keys?version=${encodeURIComponent(v)}`,
    `/room_keys/keys/${room}?version=${encodeURIComponent(v)}`,
    `/room_keys/keys/${room}/S1?version=${encodeURIComponent(v)}`,
  ];
  const keyFields = (prefix: readonly string[], template: unknown, path: string) => {
    const base = { method: "PUT", path };
    return [
      ...mutations(base, template, [...prefix, "first_message_index"], NOT_COUNT),
      ...mutations(base, template, [...prefix, "forwarded_count"], NOT_COUNT),
      ...mutations(base, template, [...prefix, "is_verified"], NOT_BOOLEAN),
      ...mutations(base, template, [...prefix, "session_data"], [
        ...NOT_OBJECT,
        { big: "x".repeat(40_000) },
      ]),
      ...mutations(base, template, [...prefix, "first_message_index"], [undefined]),
    ];
  };
  return [
    ...mutations(post, version, [], NOT_OBJECT.filter((v) => v !== DEEP_ARRAY)),
    ...mutations(post, version, ["algorithm"], [...NOT_STRING, "", "a".repeat(256), undefined]),
    ...mutations(post, version, ["auth_data"], [
      ...NOT_OBJECT,
      undefined,
      {},
      { public_key: 1 },
      { public_key: "k", big: "x".repeat(40_000) },
    ]),
    ...mutations(put, version, ["algorithm"], [...NOT_STRING, "m.other.algorithm"]),
    ...mutations(put, version, ["auth_data"], NOT_OBJECT),
    ...mutations(put, version, ["version"], [...NOT_STRING, "2", "01"]),
    ...BAD_VERSIONS.flatMap((v) => [
      {
        name: `GET /room_keys/version/${describe(v)}`,
        method: "GET",
        path: `/room_keys/version/${encodeURIComponent(v)}`,
      },
      {
        name: `PUT /room_keys/version/${describe(v)}`,
        method: "PUT",
        path: `/room_keys/version/${encodeURIComponent(v)}`,
        body: version,
      },
      {
        name: `DELETE /room_keys/version/${describe(v)}`,
        method: "DELETE",
        path: `/room_keys/version/${encodeURIComponent(v)}`,
      },
      ...keysPaths(v).flatMap((path) => [
        { name: `GET ${path.split("?")[0]} version ${describe(v)}`, method: "GET", path },
        { name: `DELETE ${path.split("?")[0]} version ${describe(v)}`, method: "DELETE", path },
      ]),
      {
        name: `PUT /room_keys/keys version ${describe(v)}`,
        method: "PUT",
        path: keysPaths(v)[0],
        body: all,
      },
      {
        name: `PUT /room_keys/keys/{room}/{session} version ${describe(v)}`,
        method: "PUT",
        path: keysPaths(v)[2],
        body: key,
      },
    ]).map((c) => ({ ...c, expect: "4xx" as const })),
    // An unknown (never created) version.
    ...keysPaths("7").map((path) => ({
      name: `PUT ${path.split("?")[0]} of an unknown version`,
      method: "PUT",
      path,
      body: path.endsWith("S1?version=7") ? key : path.includes(room) ? all.rooms[f.roomId] : all,
      expect: "4xx" as const,
    })),
    // Without ?version=.
    ...keysPaths("1").flatMap((path) =>
      ["GET", "PUT", "DELETE"].map((method) => ({
        name: `${method} ${path.split("?")[0]} without version`,
        method,
        path: path.split("?")[0],
        body: method === "PUT" ? key : undefined,
        expect: "4xx" as const,
      }))
    ),
    // Bad room IDs and session IDs in paths.
    ...BAD_ROOM_IDS.flatMap((roomId) =>
      [
        `/room_keys/keys/${encodeURIComponent(roomId)}`,
        `/room_keys/keys/${encodeURIComponent(roomId)}/S1`,
      ]
        .flatMap((p) =>
          ["GET", "PUT", "DELETE"].map((method) => ({
            name: `${method} ${p}`,
            method,
            path: `${p}?version=1`,
            body: method === "PUT" ? (p.endsWith("/S1") ? key : all.rooms[f.roomId]) : undefined,
            expect: "4xx" as const,
          }))
        )
    ),
    ...["s".repeat(256), "é".repeat(200), "s".repeat(5000)].flatMap((sessionId) =>
      ["GET", "PUT", "DELETE"].map((method) => ({
        name: `${method} /room_keys/keys/{room}/${describe(sessionId)}`,
        method,
        path: `/room_keys/keys/${room}/${encodeURIComponent(sessionId)}?version=1`,
        body: method === "PUT" ? key : undefined,
        expect: "4xx" as const,
      }))
    ),
    // Bodies.
    ...mutations(
      { method: "PUT", path: keysPaths("1")[0] },
      all,
      [],
      NOT_OBJECT.filter((v) => v !== DEEP_ARRAY),
    ),
    ...mutations({ method: "PUT", path: keysPaths("1")[0] }, all, ["rooms"], [
      ...NOT_OBJECT,
      undefined,
    ]),
    ...mutations({ method: "PUT", path: keysPaths("1")[0] }, all, ["rooms", f.roomId], NOT_OBJECT),
    ...mutations(
      { method: "PUT", path: keysPaths("1")[0] },
      all,
      ["rooms", f.roomId, "sessions"],
      NOT_OBJECT,
    ),
    ...mutations({ method: "PUT", path: keysPaths("1")[0] }, all, [
      "rooms",
      f.roomId,
      "sessions",
      "S1",
    ], NOT_OBJECT),
    ...keyFields(["rooms", f.roomId, "sessions", "S1"], all, keysPaths("1")[0]),
    ...BAD_ROOM_IDS.map((roomId) => ({
      name: `PUT /room_keys/keys room ${describe(roomId)}`,
      method: "PUT",
      path: keysPaths("1")[0],
      body: { rooms: { [roomId]: { sessions: { S1: key } } } },
      expect: "4xx" as const,
    })),
    ...["", "s".repeat(256)].map((sessionId) => ({
      name: `PUT /room_keys/keys session ${describe(sessionId)}`,
      method: "PUT",
      path: keysPaths("1")[1],
      body: { sessions: { [sessionId]: key } },
      expect: "4xx" as const,
    })),
    ...mutations({ method: "PUT", path: keysPaths("1")[1] }, { sessions: { S1: key } }, [
      "sessions",
    ], [...NOT_OBJECT, undefined]),
    ...keyFields([], key, keysPaths("1")[2]),
  ];
}

/** Every E2EE endpoint without a token and with an unknown one. */
function tokenCases(): FuzzCase[] {
  const endpoints: [string, string, unknown?][] = [
    ["POST", "/keys/upload", {}],
    ["POST", "/keys/upload/DEVICE", {}],
    ["POST", "/keys/query", { device_keys: {} }],
    ["POST", "/keys/claim", { one_time_keys: {} }],
    ["GET", "/keys/changes?from=s00000000000000000000&to=s00000000000000000000"],
    ["POST", "/keys/device_signing/upload", {}],
    ["POST", "/keys/signatures/upload", {}],
    ["PUT", "/sendToDevice/m.fuzz/tok", { messages: {} }],
    ["POST", "/room_keys/version", { algorithm: "a", auth_data: {} }],
    ["GET", "/room_keys/version"],
    ["GET", "/room_keys/version/1"],
    ["PUT", "/room_keys/version/1", { algorithm: "a", auth_data: {} }],
    ["DELETE", "/room_keys/version/1"],
    ["GET", "/room_keys/keys?version=1"],
    ["PUT", "/room_keys/keys?version=1", { rooms: {} }],
    ["DELETE", "/room_keys/keys?version=1"],
    ["GET", "/room_keys/keys/!r:example.org/S?version=1"],
  ];
  return endpoints.flatMap(([method, path, body]) =>
    ["none", "not-a-token", "syt_forged_0000000000"].map((token) => ({
      name: `${method} ${path.split("?")[0]} with token ${token}`,
      method,
      path,
      body,
      token,
      expect: "4xx" as const,
    }))
  );
}

async function countEntries(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [] })) n++;
  return n;
}

/** Run one case; returns what is wrong with the answer, if anything. */
async function runCase(f: Fixture, c: FuzzCase): Promise<string | null> {
  const token = c.token === "none" ? undefined : c.token ?? f.alice.accessToken;
  const before = c.expect === "4xx" ? await countEntries(f.server.kv) : 0;
  const res = await f.server.request(c.method, V3 + c.path, { token, body: c.body });
  const isMatrixError = typeof res.body?.errcode === "string" &&
    res.body.errcode.startsWith("M_") && typeof res.body?.error === "string";
  if (res.status >= 500) return `${res.status} ${JSON.stringify(res.body)}`;
  // A UIA challenge (401 with flows) is the spec's answer when a stage is still to be done.
  const isChallenge = res.status === 401 && Array.isArray(res.body?.flows);
  if (res.status >= 400 && !isMatrixError && !isChallenge) {
    return `${res.status} without a Matrix error`;
  }
  if (c.expect === "4xx") {
    if (res.status < 400) {
      return `accepted: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
    }
    const after = await countEntries(f.server.kv);
    // A UIA challenge stores its session; anything else refused must leave the store alone.
    if (after !== before && res.status !== 401) return `${res.status} but wrote ${after - before}`;
  }
  if (c.expect === "failure") {
    const [userId, keyId] = c.failureAt!;
    const failure = res.body?.failures?.[userId]?.[keyId];
    if (res.status === 200 && typeof failure?.errcode === "string") return null;
    if (res.status >= 400) return null; // refusing the whole request is also safe
    return `no failure for ${userId} ${keyId}: ${res.status} ${JSON.stringify(res.body)}`;
  }
  return null;
}

/** The whole E2EE flow, to show the server still works after the bad input. */
async function assertStillWorks(f: Fixture): Promise<void> {
  const { server, alice, bob } = f;
  const req = (method: string, path: string, token: string, body?: unknown) =>
    server.request(method, V3 + path, { token, body });
  const bobDevice = await newTestDevice(bob.userId, bob.deviceId);
  const uploaded = await req("POST", "/keys/upload", bob.accessToken, {
    device_keys: await bobDevice.deviceKeys(),
    one_time_keys: await bobDevice.oneTimeKeys(1),
  });
  assertEquals(uploaded.body, { one_time_key_counts: { [ALG]: 1 } });
  const query = await req("POST", "/keys/query", bob.accessToken, {
    device_keys: { [bob.userId]: [], [alice.userId]: [] },
  });
  assertEquals(Object.keys(query.body.device_keys[bob.userId]), [bob.deviceId]);
  assertEquals(Object.keys(query.body.device_keys[alice.userId]), [alice.deviceId]);
  assertEquals(query.body.master_keys[alice.userId].usage, ["master"]);
  const claim = await req("POST", "/keys/claim", alice.accessToken, {
    one_time_keys: { [bob.userId]: { [bob.deviceId]: ALG } },
  });
  assertEquals(Object.keys(claim.body.one_time_keys[bob.userId][bob.deviceId]), [`${ALG}:AAAA0`]);
  const first = await req("GET", "/sync?timeout=0", bob.accessToken);
  assertEquals(first.status, 200);
  const sent = await req("PUT", "/sendToDevice/m.after/after1", alice.accessToken, {
    messages: { [bob.userId]: { "*": { n: 1 } } },
  });
  assertEquals(sent.status, 200);
  const next = await req("GET", `/sync?timeout=0&since=${first.body.next_batch}`, bob.accessToken);
  assertEquals(next.body.to_device.events, [
    { type: "m.after", sender: alice.userId, content: { n: 1 } },
  ]);
  const put = await req(
    "PUT",
    `/room_keys/keys/${encodeURIComponent(f.roomId)}/AFTER?version=1`,
    alice.accessToken,
    {
      first_message_index: 0,
      forwarded_count: 0,
      is_verified: true,
      session_data: { ciphertext: "c" },
    },
  );
  assertEquals(put.status, 200, JSON.stringify(put.body));
  const current = await req("GET", "/room_keys/version", alice.accessToken);
  assertEquals([current.body.version, current.body.count], ["1", 1]);
  const changes = await req(
    "GET",
    `/keys/changes?from=${first.body.next_batch}&to=${next.body.next_batch}`,
    alice.accessToken,
  );
  assertEquals(changes.status, 200);
}

const GROUPS: [string, (f: Fixture) => FuzzCase[] | Promise<FuzzCase[]>][] = [
  ["/keys/upload", keyUploadCases],
  ["/keys/query and /keys/claim", keyQueryAndClaimCases],
  ["/keys/changes", keyChangesCases],
  ["cross-signing and signature uploads", crossSigningCases],
  ["/sendToDevice", toDeviceCases],
  ["/room_keys", backupCases],
  ["access tokens", tokenCases],
];

for (const [group, build] of GROUPS) {
  Deno.test(`E2EE fuzz: bad input to ${group} gets Matrix 4xx errors, writes nothing, and the server still works`, async () => {
    const f = await setup();
    try {
      const cases = await build(f);
      assert(cases.length > 0);
      const problems: string[] = [];
      for (const c of cases) {
        const problem = await runCase(f, c);
        if (problem !== null) problems.push(`${c.name}: ${problem}`);
      }
      assertEquals(problems, [], `${problems.length} of ${cases.length} cases`);
      await assertStillWorks(f);
    } finally {
      f.server.close();
    }
  });
}
