/**
 * E2EE fuzz cases for /sendToDevice, the /room_keys backup endpoints, dehydrated devices
 * (MSC3814), and missing or unknown access tokens on every E2EE endpoint.
 */
import { newTestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import {
  BACKUP_ALG,
  BAD_DEVICE_IDS,
  BAD_ROOM_IDS,
  BAD_USER_IDS,
  BAD_VERSIONS,
  DEEP_ARRAY,
  DEEP_OBJECT,
  describe,
  type Fixture,
  type FuzzCase,
  HUGE,
  mutations,
  NOT_BOOLEAN,
  NOT_COUNT,
  NOT_OBJECT,
  NOT_STRING,
  V3,
  withEntry,
  withValue,
} from "./e2ee_fuzz_support.ts";

/** The MSC3814 endpoints' prefix. */
const MSC3814 = "/_matrix/client/unstable/org.matrix.msc3814.v1";

export function toDeviceCases(f: Fixture): FuzzCase[] {
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

export function backupCases(f: Fixture): FuzzCase[] {
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
      // session_data is opaque (any JSON value, as Synapse keeps it): only its size is bounded.
      ...mutations(base, template, [...prefix, "session_data"], [
        { big: "x".repeat(40_000) },
        undefined,
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

/**
 * Dehydrated devices: alice has one (DEHYDRATED); each case tries to replace it with one field
 * broken, or to read its inbox with a bad token, limit or device.
 */
export async function dehydratedDeviceCases(f: Fixture): Promise<FuzzCase[]> {
  const userId = f.alice.userId;
  const upload = async (deviceId: string) => {
    const device = await newTestDevice(userId, deviceId);
    return {
      device_id: deviceId,
      device_data: { algorithm: "org.matrix.msc3814.v2", device_pickle: "p", nonce: "n" },
      initial_device_display_name: "Dehydrated",
      device_keys: await device.deviceKeys(),
      one_time_keys: await device.oneTimeKeys(1),
      fallback_keys: await device.fallbackKey("FB"),
    };
  };
  const created = await f.server.request("PUT", `${MSC3814}/dehydrated_device`, {
    token: f.alice.accessToken,
    body: await upload("DEHYDRATED"),
  });
  if (created.status !== 200) throw new Error(`PUT dehydrated_device: ${created.status}`);
  const template = await upload("DEHYDRATED2");
  const put = { method: "PUT", path: `${MSC3814}/dehydrated_device` };
  const events = `${MSC3814}/dehydrated_device/DEHYDRATED/events`;
  const badTokens = ["", "x", "d", "s00000000000000000000", "d123", HUGE];
  const badLimits = ["abc", "-1", "1.5", "1e3", "9999999999", HUGE];
  return [
    ...mutations(put, template, [], NOT_OBJECT),
    ...mutations(put, template, ["device_id"], [
      ...NOT_STRING,
      undefined,
      ...BAD_DEVICE_IDS,
      f.alice.deviceId,
    ]),
    ...mutations(put, template, ["device_data"], [
      ...NOT_OBJECT,
      undefined,
      {},
      { algorithm: 1 },
      { algorithm: "a", big: "x".repeat(100_000) },
    ]),
    ...mutations(put, template, ["initial_device_display_name"], [
      ...NOT_STRING,
      "n".repeat(10_000),
    ]),
    ...mutations(put, template, ["device_keys"], [...NOT_OBJECT, undefined]),
    ...mutations(put, template, ["device_keys", "device_id"], ["DEHYDRATED", f.alice.deviceId]),
    ...mutations(put, template, ["device_keys", "user_id"], [f.bob.userId]),
    ...mutations(put, template, ["one_time_keys"], NOT_OBJECT),
    ...mutations(put, template, ["fallback_keys"], NOT_OBJECT),
    ...badTokens.flatMap((token) => [
      {
        name: `GET dehydrated events from=${describe(token)}`,
        method: "GET",
        path: `${events}?from=${encodeURIComponent(token)}`,
        expect: "4xx" as const,
      },
      {
        name: `POST dehydrated events next_batch=${describe(token)}`,
        method: "POST",
        path: events,
        body: { next_batch: token },
        expect: "4xx" as const,
      },
    ]),
    ...badLimits.map((limit) => ({
      name: `GET dehydrated events limit=${describe(limit)}`,
      method: "GET",
      path: `${events}?limit=${encodeURIComponent(limit)}`,
      expect: "4xx" as const,
    })),
    // (An empty body, which the harness sends for "", is the draft's way of asking from the start.)
    ...mutations(
      { method: "POST", path: events },
      { next_batch: "d" },
      [],
      NOT_OBJECT.filter((v) => v !== ""),
    ),
    ...mutations({ method: "POST", path: events }, { next_batch: "d" }, ["next_batch"], NOT_STRING),
    // Another device's inbox, or one that is not the current dehydrated device.
    ...[f.alice.deviceId, f.bob.deviceId, "DEHYDRATED2", "d".repeat(300)].map((deviceId) => ({
      name: `GET dehydrated events of ${describe(deviceId)}`,
      method: "GET",
      path: `${MSC3814}/dehydrated_device/${encodeURIComponent(deviceId)}/events`,
      expect: "4xx" as const,
    })),
    // The r0/v3 prefixes do not serve the unstable endpoint.
    {
      name: "GET /dehydrated_device under v3",
      method: "GET",
      path: `${V3}/dehydrated_device`,
      expect: "4xx",
    },
  ];
}

/** Every E2EE endpoint without a token and with an unknown one. */
export function tokenCases(): FuzzCase[] {
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
    ["GET", `${MSC3814}/dehydrated_device`],
    ["PUT", `${MSC3814}/dehydrated_device`, { device_id: "D", device_data: { algorithm: "a" } }],
    ["DELETE", `${MSC3814}/dehydrated_device`],
    ["GET", `${MSC3814}/dehydrated_device/D/events`],
    ["POST", `${MSC3814}/dehydrated_device/D/events`, {}],
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
