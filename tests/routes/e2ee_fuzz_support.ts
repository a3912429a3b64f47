/**
 * Shared parts of the E2EE fuzz test (e2ee_fuzz_test.ts): the case type, the families of bad
 * values, helpers that break one thing in a valid request, and the fixture (two users, alice
 * with device keys, one-time and fallback keys, cross-signing keys, a backup and a room).
 */
import { assertEquals } from "../assert.ts";
import { newCrossSigning } from "../domain/e2ee/cross_signing_fixtures.ts";
import { newTestDevice, type TestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

export const V3 = "/_matrix/client/v3";
export const ALG = "signed_curve25519";
export const BACKUP_ALG = "m.megolm_backup.v1.curve25519-aes-sha2";

export type Server = Awaited<ReturnType<typeof startTestServer>>;

/**
 * What a case must get:
 * - `4xx`: a 4xx Matrix error, and nothing written (401 UIA challenges may store their session);
 * - `failure`: 200 with `failures[user][key]` holding a Matrix error (signature uploads);
 * - `any`: the input is odd but allowed (e.g. opaque content), so only "no 5xx" is asserted,
 *   and a 4xx must still be a Matrix error.
 */
export type Expect = "4xx" | "failure" | "any";

export interface FuzzCase {
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
export const HUGE = "x".repeat(300_000);
/** Nesting far beyond any sane JSON depth, still under 1 MiB of text. */
export const DEEP_ARRAY: unknown = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
export const DEEP_OBJECT: unknown = JSON.parse('{"a":'.repeat(50_000) + "1" + "}".repeat(50_000));

/** Values that are not a JSON object (or are one nested absurdly deep). */
export const NOT_OBJECT: unknown[] = [null, 0, -1, 1.5, true, "", "x", HUGE, [], [{}], DEEP_ARRAY];
/** Values that are not a string. */
export const NOT_STRING: unknown[] = [null, 0, 1.5, true, {}, [], ["x"], DEEP_OBJECT];
/** Values that are not a list of strings. */
export const NOT_STRING_LIST: unknown[] = [null, 0, "x", {}, [1], [null], [{}], [[]], DEEP_ARRAY];
/** Values that are not a non-negative integer. */
export const NOT_COUNT: unknown[] = [null, "1", true, {}, [], -1, 1.5, 2 ** 60, DEEP_ARRAY];
/** Values that are not a boolean. */
export const NOT_BOOLEAN: unknown[] = [null, 0, 1, "true", {}, []];
/** Values that are not a number (timeouts). */
export const NOT_NUMBER: unknown[] = [null, "10", true, {}, [], DEEP_ARRAY];

/** Strings that are not user IDs. */
export const BAD_USER_IDS = [
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
export const BAD_DEVICE_IDS = ["", "a\u0000b", "a\u001fb", "\ud800x", "d".repeat(256), HUGE];
/**
 * Strings that are not room IDs to a key backup, which stores them as clients name them ("!abc"
 * is fine) and checks only the sigil and length.
 */
export const BAD_ROOM_IDS = ["room", "!", "#alias:example.org", `!${"r".repeat(300)}:x`];
/** Backup versions that name nothing we could have issued. */
export const BAD_VERSIONS = [
  "abc",
  "0",
  "-1",
  "1.5",
  "01",
  "1e3",
  " 1",
  "99999999999999999999",
  HUGE,
];
/** Strings that are not sync tokens. */
export const BAD_SYNC_TOKENS = ["", "s", "s123", "t12", "sXYZ", `s${"0".repeat(19)}`, HUGE];

/** `template` with the value at `path` replaced (a deep copy; `undefined` deletes). */
export function withValue(template: unknown, path: readonly string[], value: unknown): unknown {
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
export function withEntry(
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
export function mutations(
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

export function describe(value: unknown): string {
  if (value === DEEP_ARRAY) return "<deep array>";
  if (value === DEEP_OBJECT) return "<deep object>";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...(${text.length})` : text;
}

export interface Fixture {
  server: Server;
  alice: RegisteredUser;
  bob: RegisteredUser;
  aliceDevice: TestDevice;
  roomId: string;
}

export async function setup(): Promise<Fixture> {
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
