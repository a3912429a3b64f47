/** Scope parsing of the Matrix OAuth 2.0 API: api, one device, openid, nothing else. */
import assert from "node:assert/strict";
import { parseScope } from "../../../domain/oauth/scopes.ts";
import { OAuthError } from "../../../domain/oauth/oauth_errors.ts";

const API = "urn:matrix:client:api:*";
const DEVICE = "urn:matrix:client:device:";
const UNSTABLE_API = "urn:matrix:org.matrix.msc2967.client:api:*";
const UNSTABLE_DEVICE = "urn:matrix:org.matrix.msc2967.client:device:";

function refused(scope: string): string {
  try {
    parseScope(scope);
  } catch (error) {
    assert.ok(error instanceof OAuthError);
    assert.equal(error.error, "invalid_scope");
    assert.equal(error.status, 400);
    return error.description;
  }
  assert.fail(`accepted ${scope}`);
}

Deno.test("the scope matrix-js-sdk asks for", () => {
  assert.deepEqual(parseScope(`${API} ${DEVICE}ABCDEFGHIJ`), {
    api: true,
    deviceId: "ABCDEFGHIJ",
    openid: false,
    scope: `${API} ${DEVICE}ABCDEFGHIJ`,
  });
});

Deno.test("openid, the unstable spellings, order and repeated tokens", () => {
  assert.deepEqual(parseScope(`openid ${DEVICE}d1 ${API}`), {
    api: true,
    deviceId: "d1",
    openid: true,
    scope: `openid ${DEVICE}d1 ${API}`,
  });
  assert.deepEqual(parseScope(`${UNSTABLE_API} ${UNSTABLE_DEVICE}Dev.ice_~-1`), {
    api: true,
    deviceId: "Dev.ice_~-1",
    openid: false,
    scope: `${UNSTABLE_API} ${UNSTABLE_DEVICE}Dev.ice_~-1`,
  });
  // The same device in both spellings is one device.
  assert.equal(parseScope(`${API} ${DEVICE}X ${UNSTABLE_DEVICE}X`).deviceId, "X");
  // Repeats and extra spaces collapse.
  assert.equal(parseScope(`${API}  ${API} ${DEVICE}X ${DEVICE}X`).scope, `${API} ${DEVICE}X`);
});

Deno.test("without a device scope the server picks a device and grants its scope", () => {
  const first = parseScope(API);
  const second = parseScope(`${API} openid`);
  assert.match(first.deviceId ?? "", /^[A-Z]{10}$/);
  assert.notEqual(first.deviceId, second.deviceId);
  assert.equal(first.scope, `${API} ${DEVICE}${first.deviceId}`);
  assert.equal(second.scope, `${API} openid ${DEVICE}${second.deviceId}`);
  // In the spelling of the API scope the client used.
  const unstable = parseScope(UNSTABLE_API);
  assert.equal(unstable.scope, `${UNSTABLE_API} ${UNSTABLE_DEVICE}${unstable.deviceId}`);
});

Deno.test("scopes without the API scope, with two devices or unknown tokens are refused", () => {
  assert.match(refused(""), /must include urn:matrix:client:api:\*/);
  assert.match(refused("openid"), /must include/);
  assert.match(refused(`${DEVICE}ABC`), /must include/);
  assert.match(refused(`${API} ${DEVICE}A ${DEVICE}B`), /more than one device/);
  assert.match(refused(`${API} ${DEVICE}A ${UNSTABLE_DEVICE}B`), /more than one device/);
  assert.match(refused(`${API} profile`), /unknown scope "profile"/);
  assert.match(refused(`${API} urn:matrix:client:api:read`), /unknown scope/);
  assert.match(refused(`${API} urn:synapse:admin:*`), /unknown scope/);
  assert.match(refused(`urn:matrix:client:api:* urn:matrix:client:api`), /unknown scope/);
});

Deno.test("device IDs outside the opaque identifier grammar are refused", () => {
  for (
    const id of ["", "a/b", "a:b", "a%20b", "a+b", "a@b", "x".repeat(256)]
  ) {
    assert.match(refused(`${API} ${DEVICE}${id}`), /device ID/, JSON.stringify(id));
  }
  assert.equal(parseScope(`${API} ${DEVICE}${"x".repeat(255)}`).deviceId, "x".repeat(255));
});

Deno.test("characters RFC 6749 forbids in scopes and overlong scopes are refused", () => {
  assert.match(refused(`${API} "quoted"`), /characters/);
  assert.match(refused(`${API} back\\slash`), /characters/);
  assert.match(refused(`${API}\topenid`), /characters/);
  assert.match(refused(`${API} ${DEVICE}é`), /characters/);
  assert.match(refused(`${API} ${"x".repeat(3000)}`), /longer than/);
});
