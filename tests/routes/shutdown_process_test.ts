/**
 * The real entry point (main.ts as a process) as Deno Deploy handles it: a stop is SIGINT with
 * 5 s before SIGKILL, so a waiting long-poll must be answered and the process gone well within
 * that; and a Deploy instance (DENO_DEPLOYMENT_ID set) refuses configuration that needs a disk
 * of its own. Nothing here runs on Deploy itself: these are the parts that can run here.
 */
import { assert, assertEquals } from "../assert.ts";
import { freePort } from "../clients/server_process.ts";
import { guardWithin } from "../guard.ts";

const mainPath = new URL("../../main.ts", import.meta.url).pathname;
/** Far more than a stop takes, far less than the 60 s the long-poll asks for. */
const guarded = guardWithin(20_000);

function spawnMain(env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", mainPath, "--dev"],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function waitForHealth(base: string): Promise<void> {
  for (;;) {
    try {
      const res = await fetch(`${base}/health`);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("SIGINT answers a waiting /sync and the process exits 0", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawnMain({
    TESSERA_PORT: String(port),
    TESSERA_SERVER_NAME: `localhost:${port}`,
    TESSERA_KV_PATH: `${dir}/tessera.kv`,
    TESSERA_REGISTRATION: "open",
    TESSERA_RATE_LIMITS: "off",
  });
  const output = Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  try {
    await guarded(waitForHealth(base), "server start");
    const registered = await (await fetch(`${base}/_matrix/client/v3/register`, {
      method: "POST",
      body: JSON.stringify({ username: "alice", auth: { type: "m.login.dummy" } }),
    })).json();
    const auth = { authorization: `Bearer ${registered.access_token}` };
    const first = await (await fetch(`${base}/_matrix/client/v3/sync`, { headers: auth })).json();
    const poll = fetch(
      `${base}/_matrix/client/v3/sync?since=${first.next_batch}&timeout=60000`,
      { headers: auth },
    );
    // Let the request reach the server before the signal (it may also land mid-read: the
    // answer is the same, the long-poll just never starts waiting).
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill("SIGINT");
    const res = await guarded(poll, "/sync after SIGINT");
    assertEquals(res.status, 200);
    const body = await res.json();
    assert(typeof body.next_batch === "string" && body.next_batch >= first.next_batch);
    const status = await guarded(child.status, "process exit after SIGINT");
    assertEquals(status.code, 0, (await output).join("\n"));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await output;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a Deno Deploy instance refuses a KV path and TLS files before opening anything", async () => {
  const child = spawnMain({
    DENO_DEPLOYMENT_ID: "local-test",
    TESSERA_KV_PATH: "./data/tessera.kv",
    TESSERA_TLS_CERT: "cert.pem",
    TESSERA_TLS_KEY: "key.pem",
  });
  const [status, stdout, stderr] = await guarded(
    Promise.all([
      child.status,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]),
    "start-up refusal",
  );
  assertEquals(status.code, 2, stdout + stderr);
  assert(/TESSERA_KV_PATH: leave it unset on Deno Deploy/.test(stderr), stderr);
});
