/**
 * The fleet harness itself: two processes on one KV file serve one homeserver (a session made
 * through one works on the other), and a process killed with SIGKILL comes back on the same port
 * and store while the other keeps serving.
 */
import { assertEquals } from "../assert.ts";
import { registerUser } from "../routes/client_harness.ts";
import { startFleet } from "./fleet_harness.ts";

Deno.test("fleet harness: two processes, one store; kill and restart one", async () => {
  const fleet = await startFleet(2);
  let failed = true;
  try {
    const [a, b] = fleet.processes;
    const alice = await registerUser(a, "alice");
    const whoami = "/_matrix/client/v3/account/whoami";
    const onB = await b.request("GET", whoami, { token: alice.accessToken });
    assertEquals(onB.status, 200);
    assertEquals(onB.body.user_id, `@alice:${fleet.serverName}`);

    const status = await a.kill("SIGKILL");
    assertEquals(status?.signal, "SIGKILL");
    assertEquals(a.running, false);
    assertEquals((await b.request("GET", whoami, { token: alice.accessToken })).status, 200);

    await a.start();
    const again = await a.request("GET", whoami, { token: alice.accessToken });
    assertEquals(again.status, 200);
    assertEquals(again.body.user_id, alice.userId);
    failed = false;
  } finally {
    if (failed) console.error(fleet.output());
    await fleet.stop();
  }
});
