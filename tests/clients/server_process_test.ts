/** The real-client harness itself: the server process starts, answers, and stops cleanly. */
import { assert, assertEquals } from "../assert.ts";
import { startServerProcess } from "./server_process.ts";

Deno.test("client harness: the server process serves /versions on its own port and stops", async () => {
  const server = await startServerProcess();
  try {
    assertEquals(server.serverName, `localhost:${server.port}`);
    const res = await fetch(`${server.baseUrl}/_matrix/client/versions`);
    assertEquals(res.status, 200);
    const body = await res.json();
    assert(Array.isArray(body.versions), JSON.stringify(body));
  } finally {
    await server.stop();
  }
  await fetch(`${server.baseUrl}/health`).then(
    () => assert(false, "the server still answers after stop()"),
    () => {},
  );
});
