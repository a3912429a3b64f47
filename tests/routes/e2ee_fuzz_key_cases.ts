/**
 * E2EE fuzz cases for the key endpoints: /keys/upload (and its r0 device form), /keys/query,
 * /keys/claim, /keys/changes, /keys/device_signing/upload and /keys/signatures/upload.
 */
import { newCrossSigning, newKeyPair } from "../domain/e2ee/cross_signing_fixtures.ts";
import { newTestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import {
  ALG,
  BAD_DEVICE_IDS,
  BAD_SYNC_TOKENS,
  BAD_USER_IDS,
  DEEP_ARRAY,
  DEEP_OBJECT,
  describe,
  type Fixture,
  type FuzzCase,
  HUGE,
  mutations,
  NOT_NUMBER,
  NOT_OBJECT,
  NOT_STRING,
  NOT_STRING_LIST,
  withEntry,
  withValue,
} from "./e2ee_fuzz_support.ts";

export async function keyUploadCases(f: Fixture): Promise<FuzzCase[]> {
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
    ...mutations(base, template, ["device_keys", "signatures"], [...NOT_OBJECT, {
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

export function keyQueryAndClaimCases(f: Fixture): FuzzCase[] {
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

export function keyChangesCases(): FuzzCase[] {
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

export async function crossSigningCases(f: Fixture): Promise<FuzzCase[]> {
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
