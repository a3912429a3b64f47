/**
 * The federation transport between real processes over HTTPS with a throwaway CA: B fetches
 * A's key document, a request signed with B's key by the real client is accepted by A (which
 * fetches B's key from B), and unsigned, forged or misaddressed ones get 401; a server without
 * TESSERA_FEDERATION_ALLOW_PRIVATE refuses to reach loopback peers.
 */
import assert from "node:assert/strict";
import { startServerProcesses } from "./server_processes.ts";
import { FederationClient } from "../../outbound/federation_client.ts";
import { KvWellKnownCache } from "../../kv/well_known_cache.ts";
import { keyringFromSeed } from "../../domain/protocol/server_keys.ts";
import { generateSigningSeed } from "../../domain/protocol/signing.ts";
import { encodeBase64Unpadded } from "../../domain/protocol/base64.ts";
import { signRequest } from "../../domain/federation/request_auth.ts";
import { FederationUnreachable } from "../../domain/ports/federation_transport.ts";

Deno.test({
  name:
    "two processes over HTTPS: key fetch, signed requests accepted, bad ones 401, private refused",
  async fn() {
    const seedB = generateSigningSeed();
    const cluster = await startServerProcesses(3, {
      envFor: (i): Record<string, string> => {
        if (i === 1) return { TESSERA_SIGNING_KEY: encodeBase64Unpadded(seedB) };
        // C: loopback peers not allowed.
        if (i === 2) return { TESSERA_FEDERATION_ALLOW_PRIVATE: "false" };
        return {};
      },
    });
    const kv = await Deno.openKv(":memory:");
    try {
      const [a, b, c] = cluster.servers;
      const alice = await a.register("alice");

      // B fetches A's key document over HTTPS (through B's notary endpoint).
      const own = await (await a.fetch("/_matrix/key/v2/server")).json();
      const viaB = await b.request(
        "GET",
        `/_matrix/key/v2/query/${encodeURIComponent(a.serverName)}`,
      );
      assert.equal(viaB.status, 200, JSON.stringify(viaB.body));
      assert.equal(viaB.body.server_keys.length, 1, JSON.stringify(viaB.body));
      const fetched = viaB.body.server_keys[0];
      assert.equal(fetched.server_name, a.serverName);
      assert.deepEqual(fetched.verify_keys, own.verify_keys);
      // Countersigned by B, as a notary does.
      assert.ok(fetched.signatures[b.serverName], JSON.stringify(fetched.signatures));

      // A request signed with B's key by the real client code, to A over HTTPS.
      const keyringB = await keyringFromSeed(b.serverName, seedB);
      const asB = new FederationClient({
        serverName: b.serverName,
        signingKey: keyringB.current,
        allowPrivate: true,
        caCerts: [cluster.ca.caPem],
        wellKnownCache: new KvWellKnownCache(kv),
      });
      const path = `/_matrix/federation/v1/query/profile?user_id=${
        encodeURIComponent(alice.userId)
      }`;
      const accepted = await asB.request({ method: "GET", destination: a.serverName, path });
      assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
      // A learnt B's key from B itself to check that request.
      const bKeysAtA = await a.request(
        "GET",
        `/_matrix/key/v2/query/${encodeURIComponent(b.serverName)}`,
      );
      assert.ok(bKeysAtA.body.server_keys[0].verify_keys[keyringB.current.keyId]);

      // Unsigned.
      const unsigned = await asB.request({
        method: "GET",
        destination: a.serverName,
        path,
        signed: false,
      });
      assert.equal(unsigned.status, 401);
      assert.equal((unsigned.body as { errcode: string }).errcode, "M_UNAUTHORIZED");
      // Forged: B's name and key ID, another key.
      const forger = await keyringFromSeed(b.serverName, generateSigningSeed());
      const forgedHeader = await signRequest(
        { method: "GET", uri: path, origin: b.serverName, destination: a.serverName },
        { ...forger.current, keyId: keyringB.current.keyId },
      );
      const forged = await a.fetch(path, { headers: { authorization: forgedHeader } });
      assert.equal(forged.status, 401);
      assert.equal((await forged.json()).errcode, "M_UNAUTHORIZED");
      // Misaddressed: signed by B for C, sent to A.
      const forC = await signRequest(
        { method: "GET", uri: path, origin: b.serverName, destination: c.serverName },
        keyringB.current,
      );
      const misaddressed = await a.fetch(path, { headers: { authorization: forC } });
      assert.equal(misaddressed.status, 401);
      assert.equal((await misaddressed.json()).errcode, "M_UNAUTHORIZED");

      // C may not reach loopback: it cannot fetch A's keys, and its client refuses A outright.
      const viaC = await c.request(
        "GET",
        `/_matrix/key/v2/query/${encodeURIComponent(a.serverName)}`,
      );
      assert.deepEqual(viaC.body.server_keys ?? [], [], JSON.stringify(viaC.body));
      const strict = new FederationClient({
        serverName: b.serverName,
        signingKey: keyringB.current,
        allowPrivate: false,
        caCerts: [cluster.ca.caPem],
        wellKnownCache: new KvWellKnownCache(kv),
      });
      await assert.rejects(
        strict.request({ method: "GET", destination: a.serverName, path }),
        (e) => e instanceof FederationUnreachable && e.failure === "refused",
      );
      // Without the test CA, A's certificate is not trusted.
      const untrusting = new FederationClient({
        serverName: b.serverName,
        signingKey: keyringB.current,
        allowPrivate: true,
        wellKnownCache: new KvWellKnownCache(kv),
      });
      await assert.rejects(
        untrusting.request({ method: "GET", destination: a.serverName, path }),
        (e) => e instanceof FederationUnreachable && e.failure === "tls",
      );

      // A process restarts on its KV file, port and name, with the same key.
      await a.stop();
      await a.start();
      const again = await (await a.fetch("/_matrix/key/v2/server")).json();
      assert.deepEqual(again.verify_keys, own.verify_keys);
    } catch (e) {
      for (const s of cluster.servers) {
        console.error(`--- ${s.serverName}\n${s.output().slice(-4000)}`);
      }
      throw e;
    } finally {
      kv.close();
      await cluster.stop();
    }
  },
});
