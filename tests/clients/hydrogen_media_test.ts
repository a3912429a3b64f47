/**
 * Media in Hydrogen's UI in Chromium (hydrogen-view-sdk 0.3.1, see hydrogen_test.ts for the
 * setup): a person logs in, creates a room choosing its avatar in the create-room form, sends a
 * picture from the composer's attachment menu, and sees the room avatar in the room list and the
 * picture in the timeline, both loaded from the server. Hydrogen 0.3.1 has no UI for a user's own
 * avatar, so that one is set through the client-server API (upload, then PUT avatar_url) and
 * seen on the person's next message.
 *
 * Hydrogen uploads to `/_matrix/media/r0/upload` and, because the server advertises v1.11,
 * reads thumbnails from the authenticated `/_matrix/client/v1/media/thumbnail/...`: its service
 * worker adds the access token to those `<img>` requests. So this runs with the default
 * TESSERA_MEDIA_LEGACY (frozen); the test checks the images came over the authenticated path.
 */
import { Buffer } from "node:buffer";
import type { Page } from "playwright-core";
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./matrix_helpers.ts";
import {
  expectImageLoaded,
  expectVisible,
  logIn,
  openRoomFromList,
  screenshot,
  withHydrogen,
} from "./hydrogen/hydrogen_session.ts";
import { pngImage } from "./media_images.ts";

const AUTHENTICATED_THUMBNAIL = "/_matrix/client/v1/media/thumbnail/";

/** Click `trigger` and give the file chooser it opens one PNG file (playwright wants a Buffer). */
async function choosePng(page: Page, trigger: () => Promise<void>, name: string, png: Uint8Array) {
  const [chooser] = await Promise.all([page.waitForEvent("filechooser"), trigger()]);
  await chooser.setFiles({ name, mimeType: "image/png", buffer: Buffer.from(png) });
}

async function api(
  baseUrl: string,
  method: string,
  path: string,
  token: string | undefined,
  body: BodyInit | undefined,
  contentType = "application/json",
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { "content-type": contentType };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${JSON.stringify(json)}`);
  return json;
}

Deno.test({
  name: "Hydrogen in Chromium: room avatar from the create-room form, a picture from the " +
    "composer, a user avatar; all rendered from the server",
  fn: () =>
    withHydrogen(async (page, server) => {
      const password = "hydrogen media password";
      const userId = await registerUser(server.baseUrl, "pixel", password);
      await logIn(page, "pixel", password);

      // (1) Create a room, picking its avatar in the form (Hydrogen scales it on a canvas and
      // uploads it before creating the room with an m.room.avatar initial state).
      await page.click(".LeftPanel button.create");
      await page.getByText("Create Room", { exact: true }).click();
      await expectVisible(page, "create room form", ".CreateRoomView #name");
      await choosePng(
        page,
        () => page.click(".CreateRoomView_selectAvatar"),
        "room-avatar.png",
        await pngImage(256, 256),
      );
      await expectVisible(page, "chosen avatar preview", ".CreateRoomView_selectAvatar img");
      await page.fill(".CreateRoomView #name", "Media room");
      const encrypted = page.locator(".CreateRoomView #isEncrypted");
      if (await encrypted.isChecked()) await encrypted.uncheck();
      await page.click(".CreateRoomView button[type=submit]");
      await openRoomFromList(page, "Media room");

      // The room list shows the room's avatar, a crop thumbnail read from the server.
      const roomAvatar = await expectImageLoaded(
        page,
        "room avatar in the room list",
        `.RoomList li:has-text("Media room") .avatar img[src*="/_matrix/"]`,
      );
      assert(
        new URL(roomAvatar.src).pathname.startsWith(AUTHENTICATED_THUMBNAIL),
        `room avatar src ${roomAvatar.src}`,
      );

      // (2) Send a picture from the composer's attachment menu; once the server has the event,
      // the timeline draws it from a server thumbnail (before that, from the local file). It is
      // over 600 px wide, so Hydrogen also uploads its own 400 px thumbnail (info.thumbnail_url)
      // and previews that while sending: for a smaller picture, Hydrogen 0.3.1 renders the
      // pending tile with src="undefined", a request of its own to a page that does not exist.
      await page.click(".MessageComposer_input button.sendFile");
      await choosePng(
        page,
        () => page.getByText("Send picture", { exact: true }).click(),
        "landscape.png",
        await pngImage(800, 600),
      );
      const picture = await expectImageLoaded(
        page,
        "sent picture in the timeline",
        `.Timeline_message:not(.unsent) .media img[src*="/_matrix/"]`,
        60_000,
      );
      const pictureUrl = new URL(picture.src);
      assert(pictureUrl.pathname.startsWith(AUTHENTICATED_THUMBNAIL), `picture src ${picture.src}`);
      assertEquals(pictureUrl.searchParams.get("method"), "scale");
      // A scale thumbnail keeps the 4:3 shape of the 800x600 original.
      assertEquals(
        Math.round(picture.width * 3 / 4),
        picture.height,
        `thumbnail ${picture.width}x${picture.height}`,
      );

      // (3) The user's avatar, set through the API (Hydrogen 0.3.1 has no UI for it), shows on
      // their next message.
      const { access_token: token } = await api(
        server.baseUrl,
        "POST",
        "/_matrix/client/v3/login",
        undefined,
        JSON.stringify({
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "pixel" },
          password,
        }),
      ) as { access_token: string };
      const { content_uri: avatarMxc } = await api(
        server.baseUrl,
        "POST",
        "/_matrix/media/v3/upload?filename=me.png",
        token,
        await pngImage(128, 128) as BodyInit,
        "image/png",
      ) as { content_uri: string };
      await api(
        server.baseUrl,
        "PUT",
        `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/avatar_url`,
        token,
        JSON.stringify({ avatar_url: avatarMxc }),
      );
      await expectVisible(page, "avatar change in the timeline", "text=changed their avatar");
      const text = "a message under my new avatar";
      await page.fill(".MessageComposer_input textarea", text);
      await page.press(".MessageComposer_input textarea", "Enter");
      const userAvatar = await expectImageLoaded(
        page,
        "user avatar beside the new message",
        `.Timeline_message:not(.unsent):has-text("${text}") .Timeline_messageAvatar img`,
      );
      const avatarUrl = new URL(userAvatar.src);
      assert(
        avatarUrl.pathname.startsWith(AUTHENTICATED_THUMBNAIL),
        `avatar src ${userAvatar.src}`,
      );
      assert(
        avatarUrl.pathname.endsWith(`/${avatarMxc.split("/").pop()}`),
        `avatar ${userAvatar.src} is not ${avatarMxc}`,
      );

      console.log(`screenshot: ${await screenshot(page, "hydrogen_media")}`);
    }),
});
