/**
 * The real-client tests drive Debian's matrix-nio, libolm and Chromium. The README promises that
 * `npx -y deno@2 task test` passes on a fresh machine with only Node and npm, so a test that
 * finds one of them missing installs it with apt-get (as root, or through sudo) instead of
 * failing with instructions. Parallel test files share one dpkg lock: apt waits for it.
 */

/** Packages already known to be installed in this process, so each is probed once. */
const installed = new Set<string>();
/** One install at a time per process; apt's lock timeout covers other processes. */
let running: Promise<void> = Promise.resolve();

/** Make sure these Debian packages are installed, installing the missing ones. */
export function ensureDebianPackages(packages: readonly string[]): Promise<void> {
  const next = running.then(() => install(packages));
  running = next.catch(() => {});
  return next;
}

async function install(packages: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const pkg of packages) {
    if (installed.has(pkg) || await isInstalled(pkg)) installed.add(pkg);
    else missing.push(pkg);
  }
  if (missing.length === 0) return;
  // Say what is being installed: it takes a while, and it changes the machine.
  console.log(`installing ${missing.join(" ")} from Debian for the real-client tests (apt-get)`);
  const sudo = Deno.uid() === 0 ? [] : ["sudo", "-n"];
  const apt = (args: string[]) =>
    run([...sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", ...args]);
  // A fresh machine has no package lists yet; update once, then install.
  const update = await apt(["-o", "DPkg::Lock::Timeout=600", "update", "-qq"]);
  const result = update.code === 0
    ? await apt(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", ...missing])
    : update;
  if (result.code !== 0) {
    throw new Error(
      `could not install ${missing.join(" ")} with apt-get (needs root or sudo):\n${result.text}`,
    );
  }
  for (const pkg of missing) installed.add(pkg);
}

async function isInstalled(pkg: string): Promise<boolean> {
  const probe = await run(["dpkg-query", "-W", "-f=${Status}", pkg]).catch(() => undefined);
  return probe !== undefined && probe.code === 0 && probe.text.includes("install ok installed");
}

async function run(argv: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, text: (decode(out.stdout) + decode(out.stderr)).slice(-4000) };
}

/** What the matrix-nio tests need: Debian's nio and its libolm binding. */
export const NIO_PACKAGES = ["python3-matrix-nio", "python3-olm"] as const;
