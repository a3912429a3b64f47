/**
 * Table-driven bad input against every E2EE endpoint (keys, cross-signing, key changes,
 * send-to-device, key backup, dehydrated devices), with a valid session: wrong types, nulls, huge strings, deep
 * nesting, arrays where objects go, invalid user/room/device IDs, non-numeric backup versions,
 * malformed sync tokens, missing and unknown access tokens. Each case is one valid request with
 * one thing broken, so the refusal is about that thing. Every case must get a Matrix error
 * (`errcode` + `error`) with a 4xx status (or, for /keys/signatures/upload, a per-key failure as
 * the spec asks), never a 500; a refused request must write nothing; and the server must still
 * serve the whole E2EE flow afterwards.
 */
import { assert, assertEquals } from "../assert.ts";
import { newTestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import {
  crossSigningCases,
  keyChangesCases,
  keyQueryAndClaimCases,
  keyUploadCases,
} from "./e2ee_fuzz_key_cases.ts";
import {
  backupCases,
  dehydratedDeviceCases,
  toDeviceCases,
  tokenCases,
} from "./e2ee_fuzz_other_cases.ts";
import { ALG, type Fixture, type FuzzCase, setup, V3 } from "./e2ee_fuzz_support.ts";

async function countEntries(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [] })) n++;
  return n;
}

/** Run one case; returns what is wrong with the answer, if anything. */
async function runCase(f: Fixture, c: FuzzCase): Promise<string | null> {
  const token = c.token === "none" ? undefined : c.token ?? f.alice.accessToken;
  const before = c.expect === "4xx" ? await countEntries(f.server.kv) : 0;
  const url = c.path.startsWith("/_matrix/") ? c.path : V3 + c.path;
  const res = await f.server.request(c.method, url, { token, body: c.body });
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
  // (alice may also have a dehydrated device by now.)
  assert(Object.keys(query.body.device_keys[alice.userId]).includes(alice.deviceId));
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
  ["dehydrated devices (MSC3814)", dehydratedDeviceCases],
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
