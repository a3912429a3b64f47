/**
 * Hydrogen's web UI for browser tests: `deno bundle` turns ./boot.js and the hydrogen-view-sdk
 * it imports into one browser module, served with the SDK's CSS, fonts and icons from a small
 * static server on loopback.
 */
import { assert } from "../../assert.ts";

/** Debian's Chromium. */
export const chromiumPath = "/usr/bin/chromium";
const bootPath = new URL("./boot.js", import.meta.url).pathname;
const repoRoot = new URL("../../../", import.meta.url).pathname;

/** Flags that keep Debian's Chromium off the network it cannot reach and quiet as root. */
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function denoJson(args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** hydrogen-view-sdk's folder (built library, service worker and assets) in Deno's npm cache. */
async function hydrogenPackageDir(): Promise<string> {
  const local = `${repoRoot}node_modules/hydrogen-view-sdk`;
  if (await Deno.stat(local).then(() => true, () => false)) return local;
  const graph = await denoJson(["info", "--json", bootPath]);
  const key = Object.keys(graph.npmPackages as object).find((k) =>
    k.startsWith("hydrogen-view-sdk@")
  );
  assert(key, "hydrogen-view-sdk is not in boot.js's module graph");
  const cache = (await denoJson(["info", "--json"])).npmCache as string;
  const dir = `${cache}/registry.npmjs.org/hydrogen-view-sdk/${key.split("@")[1]}`;
  await Deno.stat(dir);
  return dir;
}

/** Bundle boot.js and the SDK it imports into one browser module in `outDir`. */
async function bundleHydrogen(outDir: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "browser", "-o", `${outDir}/boot.js`, bootPath],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`deno bundle failed: ${new TextDecoder().decode(out.stderr)}`);
}

const indexHtml = `<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Hydrogen on Tessera</title>
  <link rel="stylesheet" href="assets/theme-element-light.css">
</head>
<body class="hydrogen">
  <div id="hydrogen" class="hydrogen"></div>
  <script type="module" src="boot.js"></script>
</body>
</html>
`;

const contentTypes: Record<string, string> = {
  css: "text/css",
  js: "text/javascript",
  json: "application/json",
  html: "text/html",
  svg: "image/svg+xml",
  woff: "font/woff",
  woff2: "font/woff2",
  png: "image/png",
};

/**
 * Serve the page, the bundle, the SDK's assets and its service worker (Hydrogen's session
 * start needs one: it hands the access token to it for authenticated media) on loopback.
 */
function serveHydrogen(bundleDir: string, packageDir: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    let file: string | undefined;
    if (path === "/" || path === "/index.html") {
      return new Response(indexHtml, { headers: { "content-type": "text/html" } });
    } else if (path === "/boot.js") {
      file = `${bundleDir}/boot.js`;
    } else if (path === "/sw.js") {
      file = `${packageDir}/lib-build/sw.js`;
    } else if (/^\/assets\/[A-Za-z0-9._-]+$/.test(path)) {
      file = `${packageDir}/asset-build/assets/${path.slice("/assets/".length)}`;
    }
    if (!file) return new Response("not found", { status: 404 });
    try {
      const body = await Deno.readFile(file);
      const ext = file.split(".").pop() ?? "";
      return new Response(body, {
        headers: { "content-type": contentTypes[ext] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

/** A served Hydrogen: `pageUrl(homeserver)` opens it against that homeserver; `stop()` cleans up. */
export interface HydrogenApp {
  pageUrl(homeserverBaseUrl: string): string;
  stop(): Promise<void>;
}

/** Bundle and serve Hydrogen on a free loopback port. */
export async function startHydrogenApp(): Promise<HydrogenApp> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-hydrogen-bundle-" });
  try {
    await bundleHydrogen(dir);
    const web = serveHydrogen(dir, await hydrogenPackageDir());
    return {
      pageUrl: (hs) => `http://127.0.0.1:${web.addr.port}/?homeserver=${encodeURIComponent(hs)}`,
      stop: async () => {
        await web.shutdown();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}
