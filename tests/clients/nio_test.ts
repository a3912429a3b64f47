/**
 * matrix-nio, the Python client library, run by Debian's own python3 (not a pyenv one, which
 * cannot see Debian's python3-matrix-nio) against the real server process. `.ci/run` installs
 * python3-matrix-nio and python3-olm.
 */
import { assert } from "../assert.ts";
import { startServerProcess } from "./server_process.ts";
import { ensureDebianPackages, NIO_PACKAGES } from "./debian_packages.ts";

const python = "/usr/bin/python3";
const script = new URL("./nio_client.py", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(python, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { PYTHONDONTWRITEBYTECODE: "1" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, text: decode(out.stdout) + decode(out.stderr) };
}

/** Install Debian's nio and olm when missing; fail with what went wrong if they still don't load. */
async function requireNio(): Promise<void> {
  await ensureDebianPackages(NIO_PACKAGES);
  let probe;
  try {
    probe = await run(["-c", "import nio, olm"]);
  } catch (error) {
    throw new Error(
      `${python} cannot be run (${error}); install Debian's python3, python3-matrix-nio and ` +
        "python3-olm (apt-get install -y python3-matrix-nio python3-olm; .ci/run does this)",
    );
  }
  if (probe.code !== 0) {
    throw new Error(
      `matrix-nio is not installed for ${python}: apt-get install -y python3-matrix-nio ` +
        `python3-olm (.ci/run does this).\n${probe.text}`,
    );
  }
}

Deno.test({
  name: "matrix-nio: register, log in, create a room, send, and sync the message back (r0 paths)",
  fn: async () => {
    await requireNio();
    const server = await startServerProcess();
    let result;
    try {
      result = await run([script, server.baseUrl, server.serverName]);
    } finally {
      await server.stop();
    }
    assert(
      result.code === 0,
      `nio client failed (exit ${result.code}):\n${result.text}\nserver output:\n${server.output()}`,
    );
    assert(result.text.includes("ok message synced back"), result.text);
  },
});
