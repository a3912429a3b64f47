/**
 * Driving Hydrogen's web UI in Chromium for the browser tests: `withHydrogen` starts the server
 * process, the bundled Hydrogen and a fresh Chromium profile and reports Hydrogen's requests, the
 * browser's errors and the server's output when a step fails; `expectVisible` waits for an
 * element or fails early on Hydrogen's own error text; `screenshot` keeps a picture of the page.
 */
import { chromium, type Page } from "playwright-core";
import { assert } from "../../assert.ts";
import { type ServerProcess, startServerProcess } from "../server_process.ts";
import { ensureDebianPackages } from "../debian_packages.ts";
import { chromiumArgs, chromiumPath, startHydrogenApp } from "./hydrogen_app.ts";

const repoRoot = new URL("../../../", import.meta.url).pathname;

/** What Hydrogen shows when a step has failed for good: stop waiting as soon as it appears. */
const hydrogenFailure =
  /Something went wrong|Can't connect to|don't seem to be correct|Could not create room/;

/**
 * Wait for `selector`, failing early when Hydrogen shows an error instead, and naming the step
 * and what the page showed.
 */
export async function expectVisible(page: Page, step: string, selector: string, timeout = 30_000) {
  const target = page.locator(selector).first();
  let problem = "";
  try {
    await target.or(page.getByText(hydrogenFailure).first()).first().waitFor({
      state: "visible",
      timeout,
    });
    if (await target.isVisible()) return;
    problem = "Hydrogen shows an error";
  } catch (error) {
    problem = (error as Error).message.split("\n")[0];
  }
  const shown = await page.locator("body").innerText().catch(() => "");
  throw new Error(
    `${step}: ${selector} did not appear (${problem}); the page shows:\n${shown.slice(0, 2000)}`,
  );
}

type Context = Awaited<ReturnType<typeof chromium.launchPersistentContext>>;

/**
 * A bug in hydrogen-view-sdk 0.3.1 itself, not a server response: its create-room form calls the
 * now-async Session.createRoom without `await` and navigates to the room `undefined`, which its
 * router turns into `true`; looking that up in IndexedDB logs this error and the new room is not
 * opened (a person, like the test, then clicks it in the room list). The client stays
 * unmodified; only this exact error is tolerated. npm has no later release to move to.
 */
const KNOWN_HYDROGEN_BUG =
  /getKey\(true\) failed on hydrogen_session_\d+\.archivedRoomSummary.*not a valid key/;

/**
 * Start the server (with `serverEnv` added to its environment), Hydrogen and a fresh Chromium
 * profile, open Hydrogen against the server and run `drive`; on failure print Hydrogen's Matrix requests, the browser's errors and the server's
 * output.
 */
export async function withHydrogen(
  drive: (page: Page, server: ServerProcess) => Promise<void>,
  serverEnv: Record<string, string> = {},
): Promise<void> {
  await ensureDebianPackages(["chromium"]);
  await Deno.stat(chromiumPath).catch(() => {
    throw new Error(`${chromiumPath} is missing: apt-get install -y chromium (.ci/run does this)`);
  });
  const server = await startServerProcess(serverEnv);
  const profile = await Deno.makeTempDir({ prefix: "tessera-chromium-profile-" });
  const requests: string[] = [];
  const browserErrors: string[] = [];
  let app: Awaited<ReturnType<typeof startHydrogenApp>> | undefined;
  let context: Context | undefined;
  let passed = false;
  try {
    app = await startHydrogenApp();
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      args: chromiumArgs,
      viewport: { width: 1200, height: 800 },
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.on("console", (msg) => {
      if (msg.type() === "error") browserErrors.push(msg.text());
    });
    page.on("pageerror", (error) => browserErrors.push(String(error)));
    page.on("response", async (res) => {
      const url = new URL(res.url());
      if (!url.pathname.startsWith("/_matrix") && !url.pathname.startsWith("/.well-known")) {
        // A missing asset of the UI itself (the browser's own favicon request aside).
        if (res.status() >= 400 && url.pathname !== "/favicon.ico") {
          browserErrors.push(`asset ${url.pathname} -> ${res.status()}`);
        }
        return;
      }
      let errcode = "";
      if (res.status() >= 400) errcode = await res.json().then((b) => b?.errcode ?? "", () => "");
      requests.push(`${res.request().method()} ${url.pathname} -> ${res.status()} ${errcode}`);
    });
    await page.goto(app.pageUrl(server.baseUrl));
    await drive(page, server);
    const uncaught = browserErrors.filter((e) =>
      !e.startsWith("Failed to load resource") && !KNOWN_HYDROGEN_BUG.test(e)
    );
    assert(uncaught.length === 0, `browser errors: ${uncaught.join("; ")}`);
    passed = true;
  } finally {
    if (!passed) {
      console.error("Hydrogen's Matrix requests:\n  " + requests.join("\n  "));
      console.error("browser console errors:\n  " + browserErrors.join("\n  "));
      console.error("server output:\n" + server.output());
    }
    await context?.close();
    await app?.stop();
    await server.stop();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** Save a screenshot under data/screenshots/ (or TESSERA_SCREENSHOT_DIR) and return its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = Deno.env.get("TESSERA_SCREENSHOT_DIR") ?? `${repoRoot}data/screenshots`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}.png`;
  await page.screenshot({ path });
  const size = (await Deno.stat(path)).size;
  assert(size > 10_000, `screenshot ${path} is only ${size} bytes`);
  return path;
}

/** Log in through Hydrogen's password form and wait for the session's room list. */
export async function logIn(page: Page, username: string, password: string): Promise<void> {
  await expectVisible(page, "login form", "#username");
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click(".PasswordLoginView button[type=submit]");
  await expectVisible(page, "session after login", ".LeftPanel button.create", 60_000);
}

/**
 * Open the room named `name` from the room list, as a person would, until its composer shows:
 * right after creation the list entry is Hydrogen's local placeholder (which offers "Join room"
 * for `local-…`), and clicking opens the room only once sync has brought the real one.
 */
export async function openRoomFromList(page: Page, name: string): Promise<void> {
  const selector = `.RoomList li:has-text("${name}")`;
  await expectVisible(page, `${name} in the room list`, selector);
  const composer = page.locator(".MessageComposer_input textarea");
  for (let attempt = 0; attempt < 60 && !await composer.isVisible(); attempt++) {
    await page.locator(selector).first().click();
    await composer.waitFor({ state: "visible", timeout: 500 }).catch(() => {});
  }
  await expectVisible(page, "room view", ".MessageComposer_input textarea");
}

/** The parts of an `HTMLImageElement` `expectImageLoaded` reads. */
interface PageImage {
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
  currentSrc: string;
  src: string;
}

/**
 * Wait until the first `<img>` matching `selector` has loaded a real picture (complete, with a
 * natural width): Hydrogen replaces an avatar whose image fails with its letter, and a broken
 * timeline image has no natural size. Returns the image's `src` and natural size.
 */
export async function expectImageLoaded(
  page: Page,
  step: string,
  selector: string,
  timeout = 30_000,
): Promise<{ src: string; width: number; height: number }> {
  await expectVisible(page, step, selector, timeout);
  // Playwright's own selectors (`:has-text`) need a locator, not document.querySelector; and
  // Hydrogen may re-render the element, so ask the locator afresh until the image has loaded.
  const image = page.locator(selector).first();
  const deadline = Date.now() + timeout;
  while (true) {
    const loaded = await image.evaluate(
      (element) => {
        const img = element as unknown as PageImage;
        return img.complete && img.naturalWidth > 0
          ? { src: img.currentSrc || img.src, width: img.naturalWidth, height: img.naturalHeight }
          : null;
      },
      undefined,
      { timeout: 1_000 },
    ).catch(() => null);
    if (loaded) return loaded;
    if (Date.now() > deadline) {
      const src = await image.getAttribute("src", { timeout: 1_000 }).catch(() => null);
      throw new Error(`${step}: ${selector} (src ${src}) did not load an image in ${timeout} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
