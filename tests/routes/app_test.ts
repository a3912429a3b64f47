import { assert, assertEquals } from "../assert.ts";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { buildApp } from "../../routes/app.ts";
import { loadConfig } from "../../domain/config.ts";
import { assembleServer } from "../../main.ts";

ed.hashes.sha512 = sha512;

const seed = new Uint8Array(32).map((_, i) => i + 1);

async function testApp(storageHealthy = () => Promise.resolve(true)) {
  const config = loadConfig({ TESSERA_SERVER_NAME: "example.org:8448" }, { dev: true });
  const kv = await Deno.openKv(":memory:");
  const { deps } = await assembleServer(
    { ...config, signingKeySeed: seed },
    kv,
    { now: () => 1_700_000_000_000 },
  );
  return Object.assign(buildApp({ ...deps, storageHealthy }), {
    [Symbol.dispose]: () => kv.close(),
  });
}

/** A sorted-key serialiser written independently of domain/canonical_json.ts (ASCII input only). */
function sortedJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${sortedJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function base64Decode(text: string): Uint8Array {
  const padded = text.replaceAll("-", "+").replaceAll("_", "/") +
    "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

Deno.test("versions advertises r0 and v1.1-v1.15, nothing newer that we do not serve", async () => {
  using app = await testApp();
  const res = await app.request("/_matrix/client/versions");
  assertEquals(res.status, 200);
  const body = await res.json();
  // The r0 range matrix-nio needs and v1.1 onward, stopping before v1.16: it switches clients
  // to state_after sync, which is not served. v1.15's OAuth 2.0 API is (tests/clients/
  // oauth_js_sdk_test.ts drives it with matrix-js-sdk).
  assert(body.versions.includes("r0.6.1"));
  for (let minor = 1; minor <= 15; minor++) assert(body.versions.includes(`v1.${minor}`));
  const newer = body.versions.filter((v: string) =>
    /^v1\.(\d+)$/.test(v) && Number(v.slice(3)) > 15
  );
  assertEquals(newer, []);
  // Each flag names something built: cross-signing (tests/routes/cross_signing_test.ts),
  // dehydrated devices (tests/routes/dehydrated_device_test.ts), the room summary
  // (tests/routes/room_summary_test.ts), mutual rooms (tests/routes/mutual_rooms_test.ts) and
  // simplified sliding sync (tests/routes/sliding_sync_test.ts).
  assertEquals(body.unstable_features, {
    "org.matrix.e2e_cross_signing": true,
    "org.matrix.msc3814": true,
    "im.nheko.summary": true,
    "uk.half-shot.msc2666.query_mutual_rooms": true,
    "org.matrix.simplified_msc3575": true,
  });
});

Deno.test("unknown paths get 404 M_UNRECOGNIZED, wrong methods 405", async () => {
  using app = await testApp();
  const missing = await app.request("/_matrix/client/v3/nonsense");
  assertEquals(missing.status, 404);
  assertEquals((await missing.json()).errcode, "M_UNRECOGNIZED");
  const wrongMethod = await app.request("/_matrix/client/versions", { method: "POST" });
  assertEquals(wrongMethod.status, 405);
  assertEquals((await wrongMethod.json()).errcode, "M_UNRECOGNIZED");
});

Deno.test("CORS preflight is answered on every path, .well-known included", async () => {
  using app = await testApp();
  for (const path of ["/.well-known/matrix/client", "/_matrix/client/v3/sync", "/anything"]) {
    const res = await app.request(path, {
      method: "OPTIONS",
      headers: {
        Origin: "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
      },
    });
    assert(res.status === 204 || res.status === 200, `${path}: ${res.status}`);
    assertEquals(res.headers.get("access-control-allow-origin"), "*");
    assert(res.headers.get("access-control-allow-methods")?.includes("PUT"));
    assert(
      res.headers.get("access-control-allow-headers")?.toLowerCase().includes("authorization"),
    );
  }
  const get = await app.request("/.well-known/matrix/client", { headers: { Origin: "https://x" } });
  assertEquals(get.headers.get("access-control-allow-origin"), "*");
});

Deno.test("well-known documents point at this server", async () => {
  using app = await testApp();
  const client = await (await app.request("/.well-known/matrix/client")).json();
  assertEquals(client["m.homeserver"].base_url, "http://example.org:8448");
  const server = await (await app.request("/.well-known/matrix/server")).json();
  assertEquals(server["m.server"], "example.org:8448");
});

Deno.test("server key document verifies with an independent Ed25519 implementation", async () => {
  using app = await testApp();
  const res = await app.request("/_matrix/key/v2/server");
  assertEquals(res.status, 200);
  const doc = await res.json();
  assertEquals(doc.server_name, "example.org:8448");
  assertEquals(doc.valid_until_ts, 1_700_000_000_000 + 24 * 3600 * 1000);
  const [keyId] = Object.keys(doc.verify_keys);
  assert(/^ed25519:[A-Za-z0-9_]+$/.test(keyId));
  const publicKey = base64Decode(doc.verify_keys[keyId].key);
  assertEquals(publicKey, ed.getPublicKey(seed));
  const signature = base64Decode(doc.signatures["example.org:8448"][keyId]);
  const { signatures: _s, unsigned: _u, ...signed } = doc;
  const message = new TextEncoder().encode(sortedJson(signed));
  assert(ed.verify(signature, message, publicKey));
  message[5] ^= 1;
  assert(!ed.verify(signature, message, publicKey));
});

Deno.test("federation version names the software", async () => {
  using app = await testApp();
  const body = await (await app.request("/_matrix/federation/v1/version")).json();
  assertEquals(body.server.name, "Tessera");
  assert(typeof body.server.version === "string");
});

Deno.test("health reports storage and turns 503 when storage fails", async () => {
  using healthy = await testApp();
  const ok = await healthy.request("/health");
  assertEquals(ok.status, 200);
  assertEquals((await ok.json()).status, "ok");
  using failing = await testApp(() => Promise.reject(new Error("down")));
  const bad = await failing.request("/health");
  assertEquals(bad.status, 503);
});
