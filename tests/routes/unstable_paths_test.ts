/**
 * Stable Client-Server endpoints answer under `/_matrix/client/unstable` too, as Synapse serves
 * them: clients written before an endpoint became stable (Element's cross-signing setup among
 * them) still call the unstable path.
 */
import { assertEquals } from "../assert.ts";
import { newCrossSigning } from "../domain/e2ee/cross_signing_fixtures.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const UNSTABLE = "/_matrix/client/unstable";

Deno.test("cross-signing, key backup and other stable endpoints answer under /unstable", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const call = (method: string, path: string, body?: unknown) =>
      server.request(method, `${UNSTABLE}${path}`, { token: alice.accessToken, body });
    const cross = await newCrossSigning(alice.userId);
    const signing = await call("POST", "/keys/device_signing/upload", {
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
      user_signing_key: cross.upload.user_signing,
    });
    assertEquals([signing.status, signing.body], [200, {}]);
    const query = await call("POST", "/keys/query", { device_keys: { [alice.userId]: [] } });
    assertEquals(query.body.master_keys[alice.userId], cross.upload.master);

    const backup = await call("POST", "/room_keys/version", {
      algorithm: "m.megolm_backup.v1.curve25519-aes-sha2",
      auth_data: { public_key: "pk" },
    });
    assertEquals(backup.body, { version: "1" });
    assertEquals((await call("GET", "/room_keys/version")).body.version, "1");

    const whoami = await call("GET", "/account/whoami");
    assertEquals(whoami.body.user_id, alice.userId);
    const unknown = await call("GET", "/no/such/endpoint");
    assertEquals([unknown.status, unknown.body.errcode], [404, "M_UNRECOGNIZED"]);
  } finally {
    server.close();
  }
});
