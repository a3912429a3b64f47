/** Starts the real entry point as a process and talks to it over HTTP, as `deno task dev` would. */
import { assert, assertEquals } from "../assert.ts";

const mainPath = new URL("../../main.ts", import.meta.url).pathname;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function startServer(env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", mainPath, "--dev"],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function waitForHealth(base: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/health`);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("server did not become healthy");
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGTERM");
  await child.status;
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
}

Deno.test("the server starts on a KV file and keeps its signing key across restarts", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const env = {
    TESSERA_PORT: String(port),
    TESSERA_SERVER_NAME: `localhost:${port}`,
    TESSERA_KV_PATH: `${dir}/nested/tessera.kv`,
  };
  const base = `http://127.0.0.1:${port}`;
  const keyIds: string[] = [];
  try {
    for (let run = 0; run < 2; run++) {
      const child = startServer(env);
      try {
        await waitForHealth(base);
        const doc = await (await fetch(`${base}/_matrix/key/v2/server`)).json();
        assertEquals(doc.server_name, `localhost:${port}`);
        keyIds.push(Object.keys(doc.verify_keys)[0]);
        const missing = await fetch(`${base}/_matrix/client/v3/unknown`);
        assertEquals(missing.status, 404);
        assertEquals((await missing.json()).errcode, "M_UNRECOGNIZED");
      } finally {
        await stop(child);
      }
    }
    assertEquals(keyIds[0], keyIds[1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a bad configuration value stops start-up with one line naming the variable", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", mainPath],
    env: { NO_COLOR: "1", TESSERA_PORT: "not-a-port", TESSERA_KV_PATH: ":memory:" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(!output.success);
  const stderr = new TextDecoder().decode(output.stderr).trim();
  const lines = stderr.split("\n").filter((l) => l.includes("TESSERA_"));
  assertEquals(lines.length, 1, stderr);
  assert(lines[0].includes("TESSERA_PORT"), stderr);
});
