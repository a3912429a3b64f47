/** The in-process test network delivers requests between servers by name, signed with X-Matrix. */
import assert from "node:assert/strict";
import { startNetwork } from "./in_process_network.ts";
import { FederationUnreachable } from "../../domain/ports/federation_transport.ts";
import { parseXMatrix } from "../../domain/federation/request_auth.ts";

Deno.test("in-process network: requests reach the named server; unknown or down ones fail", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  try {
    const fromA = net.transportFor("a.test");
    const version = await fromA.request({
      method: "GET",
      destination: "b.test",
      path: "/_matrix/federation/v1/version",
    });
    assert.equal(version.status, 200);
    assert.equal((version.body as { server: { name: string } }).server.name, "Tessera");
    // The transport wired into A's services is the network's.
    assert.equal(net.servers["a.test"].deps.federationTransport, fromA);
    // B's key document names B and is served unsigned-request.
    const keys = await fromA.request({
      method: "GET",
      destination: "b.test",
      path: "/_matrix/key/v2/server",
      signed: false,
    });
    assert.equal((keys.body as { server_name: string }).server_name, "b.test");
    await assert.rejects(
      fromA.request({ method: "GET", destination: "c.test", path: "/_matrix/key/v2/server" }),
      (e) => e instanceof FederationUnreachable && e.failure === "unresolved",
    );
    net.setReachable("b.test", false);
    await assert.rejects(
      fromA.request({ method: "GET", destination: "b.test", path: "/_matrix/key/v2/server" }),
      (e) => e instanceof FederationUnreachable && e.failure === "network",
    );
    net.setReachable("b.test", true);
    // Users register on each server through the client API.
    const alice = await net.servers["a.test"].register("alice");
    const bob = await net.servers["b.test"].register("bob");
    assert.equal(alice.userId, "@alice:a.test");
    assert.equal(bob.userId, "@bob:b.test");
    assert.equal(net.log.length, 4);
  } finally {
    await net.close();
  }
});

Deno.test("in-process network: requests carry a valid X-Matrix header unless unsigned", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  const seen: (string | null)[] = [];
  try {
    // A route on B that records the Authorization header it received.
    net.servers["b.test"].app.get("/_test/echo_auth", (c) => {
      seen.push(c.req.header("authorization") ?? null);
      return c.json({});
    });
    const fromA = net.transportFor("a.test");
    await fromA.request({ method: "GET", destination: "b.test", path: "/_test/echo_auth" });
    await fromA.request({
      method: "GET",
      destination: "b.test",
      path: "/_test/echo_auth",
      signed: false,
    });
    const auth = parseXMatrix(seen[0]!);
    assert.ok(auth);
    assert.equal(auth.origin, "a.test");
    assert.equal(auth.destination, "b.test");
    assert.equal(auth.key, net.servers["a.test"].deps.keyring.current.keyId);
    assert.equal(seen[1], null);
  } finally {
    await net.close();
  }
});

Deno.test("in-process network: an interceptor can drop or answer a request", async () => {
  const net = await startNetwork(["a.test", "b.test"]);
  try {
    const fromA = net.transportFor("a.test");
    net.intercept((req) => req.path.endsWith("/version") ? "drop" : { status: 502, body: null });
    await assert.rejects(
      fromA.request({
        method: "GET",
        destination: "b.test",
        path: "/_matrix/federation/v1/version",
      }),
      (e) => e instanceof FederationUnreachable && e.failure === "network",
    );
    const answered = await fromA.request({
      method: "GET",
      destination: "b.test",
      path: "/_matrix/key/v2/server",
    });
    assert.equal(answered.status, 502);
    net.intercept(undefined);
    const delivered = await fromA.request({
      method: "GET",
      destination: "b.test",
      path: "/_matrix/key/v2/server",
    });
    assert.equal(delivered.status, 200);
  } finally {
    await net.close();
  }
});

Deno.test("in-process network: a server with federation off sends nothing and serves no federation", async () => {
  const net = await startNetwork(["a.test", "off.test"], {
    envFor: { "off.test": { TESSERA_FEDERATION: "off" } },
  });
  try {
    await assert.rejects(
      net.transportFor("off.test").request({
        method: "GET",
        destination: "a.test",
        path: "/_matrix/federation/v1/version",
      }),
      (e) => e instanceof FederationUnreachable && e.failure === "refused",
    );
    const denied = await net.transportFor("a.test").request({
      method: "GET",
      destination: "off.test",
      path: "/_matrix/federation/v1/query/profile?user_id=%40x%3Aoff.test",
    });
    assert.equal(denied.status, 403);
  } finally {
    await net.close();
  }
});
