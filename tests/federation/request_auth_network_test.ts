/**
 * Request authentication across the in-process network: every federation route sits behind
 * X-Matrix (signed requests pass with the key B fetches from A; unsigned, forged or misaddressed
 * ones get 401), and TESSERA_FEDERATION=off closes the federation API.
 */
import assert from "node:assert/strict";
import { startNetwork } from "./in_process_network.ts";
import { startTestServer } from "../routes/test_server.ts";
import { formatXMatrix, parseXMatrix, signRequest } from "../../domain/federation/request_auth.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../domain/protocol/signing.ts";

Deno.test("a signed request from A is accepted by B; unsigned, forged and misaddressed ones are not", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  try {
    const inbound: string[] = [];
    const b = net.servers["b.test"];
    b.deps.onInboundServerRequest = (origin) => void inbound.push(origin);
    const bob = await b.register("bob");
    const path = `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(bob.userId)}`;
    const signed = await net.transportFor("a.test").request({
      method: "GET",
      destination: "b.test",
      path,
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    assert.deepEqual(inbound, ["a.test"]);

    // Straight into B's app, without the network's signing.
    const unsigned = await b.request("GET", path);
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.body.errcode, "M_UNAUTHORIZED");
    // Any federation path, even one no route serves, is authenticated first.
    assert.equal((await b.request("GET", "/_matrix/federation/v1/no_such_thing")).status, 401);

    // Signed by a key that is not A's.
    const forger = await signingKeyFromSeed(
      generateSigningSeed(),
      net.servers["a.test"].deps.keyring.current.keyId,
    );
    const forged = await signRequest({
      method: "GET",
      uri: path,
      origin: "a.test",
      destination: "b.test",
    }, forger);
    assert.equal(
      (await b.request("GET", path, { headers: { authorization: forged } })).status,
      401,
    );

    // Signed by A for another server.
    const forC = await signRequest(
      { method: "GET", uri: path, origin: "a.test", destination: "c.test" },
      net.servers["a.test"].deps.keyring.current,
    );
    const misaddressed = await b.request("GET", path, { headers: { authorization: forC } });
    assert.equal(misaddressed.status, 401);
    assert.equal(misaddressed.body.errcode, "M_UNAUTHORIZED");
    // The same signature with the destination left out does not verify for B either.
    const { destination: _d, ...rest } = parseXMatrix(forC)!;
    assert.equal(
      (await b.request("GET", path, { headers: { authorization: formatXMatrix(rest) } })).status,
      401,
    );
    assert.deepEqual(inbound, ["a.test"]);

    // The version stays public.
    assert.equal((await b.request("GET", "/_matrix/federation/v1/version")).status, 200);
  } finally {
    await net.close();
  }
});

Deno.test("TESSERA_FEDERATION=off: federation routes answer 403, version and server keys stay", async () => {
  const server = await startTestServer({ TESSERA_FEDERATION: "off" });
  try {
    const denied = await server.request(
      "GET",
      "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab",
    );
    assert.equal(denied.status, 403);
    assert.equal(denied.body.errcode, "M_FORBIDDEN");
    assert.equal(
      (await server.request("PUT", "/_matrix/federation/v1/send/1", { body: {} })).status,
      403,
    );
    assert.equal((await server.request("GET", "/_matrix/federation/v1/version")).status, 200);
    assert.equal((await server.request("GET", "/_matrix/key/v2/server")).status, 200);
  } finally {
    server.close();
  }
});
