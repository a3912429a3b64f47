/**
 * Hydrogen, the web client, driven like a person would drive it: its full UI (built from the
 * npm package hydrogen-view-sdk by `deno bundle` of ./hydrogen/boot.js) is served on loopback and
 * opened in Debian's Chromium through playwright-core. The test logs in through the login form,
 * creates a room from the room list's menu, sends a message from the composer, waits for the
 * server's echo in the timeline, and saves a screenshot (under data/screenshots/, or
 * TESSERA_SCREENSHOT_DIR).
 */
import { chromium, type Page } from "playwright-core";
import { assert } from "../assert.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import { ensureDebianPackages } from "./debian_packages.ts";
import { registerUser } from "./matrix_helpers.ts";
import { chromiumArgs, chromiumPath, startHydrogenApp } from "./hydrogen/hydrogen_app.ts";

const repoRoot = new URL("../../", import.meta.url).pathname;

/** What Hydrogen shows when a step has failed for good: stop waiting as soon as it appears. */
const hydrogenFailure =
  /Something went wrong|Can't connect to|don't seem to be correct|Could not create room/;

/**
 * Wait for `selector`, failing early when Hydrogen shows an error instead, and naming the step
 * and what the page showed.
 */
async function expectVisible(page: Page, step: string, selector: string, timeout = 30_000) {
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
 * Start the server, Hydrogen and a fresh Chromium profile, open Hydrogen against the server and
 * run `drive`; on failure print Hydrogen's Matrix requests, the browser's errors and the server's
 * output.
 */
async function withHydrogen(
  drive: (page: Page, server: ServerProcess) => Promise<void>,
): Promise<void> {
  await ensureDebianPackages(["chromium"]);
  await Deno.stat(chromiumPath).catch(() => {
    throw new Error(`${chromiumPath} is missing: apt-get install -y chromium (.ci/run does this)`);
  });
  const server = await startServerProcess();
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
async function screenshot(page: Page, name: string): Promise<string> {
  const dir = Deno.env.get("TESSERA_SCREENSHOT_DIR") ?? `${repoRoot}data/screenshots`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}.png`;
  await page.screenshot({ path });
  const size = (await Deno.stat(path)).size;
  assert(size > 10_000, `screenshot ${path} is only ${size} bytes`);
  return path;
}

Deno.test("Hydrogen in Chromium: the bundled UI boots and shows its sign-in screen", () =>
  withHydrogen(async (page) => {
    await expectVisible(page, "sign-in screen", ".PreSessionScreen h1");
    assert((await page.locator(".PreSessionScreen h1").innerText()).includes("Sign In"));
    // The theme's CSS applied: the sign-in box has the theme's fixed width, not the page's.
    const box = await page.locator(".PreSessionScreen").boundingBox();
    assert(
      box && Math.round(box.width) === 600,
      `sign-in screen is unstyled: ${JSON.stringify(box)}`,
    );
    await screenshot(page, "hydrogen_sign_in");
  }));

Deno.test({
  name: "Hydrogen in Chromium: log in, create a room, send from the composer, see it, screenshot",
  fn: () =>
    withHydrogen(async (page, server) => {
      const password = "hydrogen password 1";
      const userId = await registerUser(server.baseUrl, "hydra", password);

      // (1) Log in through the form.
      await expectVisible(page, "login form", "#username");
      await page.fill("#username", "hydra");
      await page.fill("#password", password);
      await page.click(".PasswordLoginView button[type=submit]");
      await expectVisible(page, "session after login", ".LeftPanel button.create", 60_000);

      // (2) Create an unencrypted private room from the room list's menu (this Hydrogen runs
      // without olm, so it cannot encrypt).
      await page.click(".LeftPanel button.create");
      await page.getByText("Create Room", { exact: true }).click();
      await expectVisible(page, "create room form", ".CreateRoomView #name");
      await page.fill(".CreateRoomView #name", "Hydrogen room");
      const encrypted = page.locator(".CreateRoomView #isEncrypted");
      if (await encrypted.isChecked()) await encrypted.uncheck();
      await page.click(".CreateRoomView button[type=submit]");
      // Hydrogen lists the new room once sync brings it; open it from the list as a person
      // would when the view does not switch to it by itself.
      const roomTile = page.locator('.RoomList li:has-text("Hydrogen room")').first();
      await expectVisible(
        page,
        "new room in the room list",
        '.RoomList li:has-text("Hydrogen room")',
      );
      // While the room is still being created, the list entry is Hydrogen's local placeholder
      // (it offers "Join room" for `local-…`); once sync brings the real room, clicking opens it.
      // Like a person, try again until the composer shows.
      const composer = page.locator(".MessageComposer_input textarea");
      for (let attempt = 0; attempt < 60 && !await composer.isVisible(); attempt++) {
        if (attempt === 0) {
          console.log("Hydrogen stayed on the room list after creating the room; opening it");
        }
        await roomTile.click();
        await composer.waitFor({ state: "visible", timeout: 500 }).catch(() => {});
      }
      await expectVisible(page, "room view", ".MessageComposer_input textarea");

      // (3) Send from the composer; (4) see the server's copy in the timeline: Hydrogen marks a
      // message "unsent" until the server has accepted it.
      const text = `Hello from Hydrogen to ${userId}`;
      await page.fill(".MessageComposer_input textarea", text);
      await page.press(".MessageComposer_input textarea", "Enter");
      await expectVisible(
        page,
        "sent message in the timeline",
        `.Timeline_message:not(.unsent):has-text("${text}")`,
      );
      const header = await page.locator(".middle-header").first().innerText();
      assert(header.includes("Hydrogen room"), `room header shows ${header}`);

      // (5) A screenshot of the room with the message.
      console.log(`screenshot: ${await screenshot(page, "hydrogen_room")}`);
    }),
});
