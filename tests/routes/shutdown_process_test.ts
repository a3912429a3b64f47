/**
 * The real entry point (main.ts as a process) as Deno Deploy handles it: a stop is SIGINT with
 * 5 s before SIGKILL, so a waiting long-poll must be answered and the process gone well within
 * that; and a Deploy instance (DENO_DEPLOYMENT_ID set) refuses configuration that needs a disk
 * of its own. Nothing here runs on Deploy itself: these are the parts that can run here.
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { guardWithin } from "../guard.ts";
import { freePort, mainProcess } from "../main_process.ts";

const V3 = "/_matrix/client/v3";
/** Far more than a stop takes, far less than the 60 s the long-poll asks for. */
const guarded = guardWithin(20_000);

/** `main.ts --dev` on a free port with `env` (not started yet). */
function mainDev(env: Record<string, string>) {
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  return mainProcess({
    args: ["--dev"],
    env: { TESSERA_PORT: String(port), TESSERA_SERVER_NAME: `localhost:${port}`, ...env },
    label: "main.ts",
    fetch: (path, init) => fetch(`${base}${path}`, init),
  });
}

Deno.test("SIGINT answers a waiting /sync and the process exits 0", async () => {
  const dir = await Deno.makeTempDir();
  const server = mainDev({
    TESSERA_KV_PATH: `${dir}/tessera.kv`,
    TESSERA_REGISTRATION: "open",
    TESSERA_RATE_LIMITS: "off",
  });
  try {
    await guarded(server.start(), "server start");
    const registered = await server.request("POST", `${V3}/register`, {
      body: { username: "alice", auth: { type: "m.login.dummy" } },
    });
    const token: string = registered.body.access_token;
    const first = await server.request("GET", `${V3}/sync`, { token });
    const poll = server.request(
      "GET",
      `${V3}/sync?since=${first.body.next_batch}&timeout=60000`,
      { token },
    );
    // Let the request reach the server before the signal (it may also land mid-read: the
    // answer is the same, the long-poll just never starts waiting).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const status = await guarded(server.kill("SIGINT"), "process exit after SIGINT");
    const res = await guarded(poll, "/sync after SIGINT");
    assertEquals(res.status, 200);
    assert(typeof res.body.next_batch === "string" && res.body.next_batch >= first.body.next_batch);
    assertEquals(status?.code, 0, server.output());
  } finally {
    await server.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a Deno Deploy instance refuses a KV path and TLS files before opening anything", async () => {
  const server = mainDev({
    DENO_DEPLOYMENT_ID: "local-test",
    TESSERA_KV_PATH: "./data/tessera.kv",
    TESSERA_TLS_CERT: "cert.pem",
    TESSERA_TLS_KEY: "key.pem",
  });
  await guarded(
    assertRejects(
      () => server.start(),
      /exited with code 2:[^]*TESSERA_KV_PATH: leave it unset on Deno Deploy/,
    ),
    "start-up refusal",
  );
});
