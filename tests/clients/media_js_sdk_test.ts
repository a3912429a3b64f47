/**
 * Media with matrix-js-sdk (the SDK behind Element) against the real server process: Alice
 * uploads a PNG with `uploadContent`, sends it as an `m.image` and makes another upload her
 * avatar; Bob, who receives the event through the SDK's own sync, downloads the image and
 * thumbnails of it (crop and scale) through the authenticated `/_matrix/client/v1/media` URLs the
 * SDK builds (`mxcUrlToHttp(..., useAuthentication=true)`) with his bearer token, and a thumbnail
 * of Alice's avatar as he sees it on her membership.
 */
import * as sdk from "matrix-js-sdk";
import { assert, assertEquals } from "../assert.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import { recordingFetch, registerUser, startSyncing, step, waitUntil } from "./matrix_helpers.ts";
import { imageSize, pngImage } from "./media_images.ts";
import { quietGlobalSdkLogger, quietLogger } from "./crypto_client.ts";

const PASSWORD = "media password 1";

interface Session {
  client: sdk.MatrixClient;
  userId: string;
  token: string;
}

/** Register `name` and log in a js-sdk client for it. */
async function signIn(
  server: ServerProcess,
  failures: string[],
  clients: sdk.MatrixClient[],
  name: string,
): Promise<Session> {
  await registerUser(server.baseUrl, name, PASSWORD);
  const anonymous = sdk.createClient({
    baseUrl: server.baseUrl,
    fetchFn: recordingFetch(failures),
    logger: quietLogger(),
  });
  const res = await anonymous.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: name },
    password: PASSWORD,
  });
  const client = sdk.createClient({
    baseUrl: server.baseUrl,
    userId: res.user_id,
    accessToken: res.access_token,
    deviceId: res.device_id,
    store: new sdk.MemoryStore(),
    fetchFn: recordingFetch(failures),
    logger: quietLogger(),
  });
  clients.push(client);
  return { client, userId: res.user_id, token: res.access_token };
}

/** GET `url` with `token` (none: no Authorization header); the status, headers and body bytes. */
async function get(url: string, token?: string) {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, bytes };
}

function errcodeOf(bytes: Uint8Array): string | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)).errcode;
  } catch {
    return undefined;
  }
}

/** A thumbnail's bytes must be an image of the type its Content-Type names. */
function thumbnailSize(res: Awaited<ReturnType<typeof get>>, what: string) {
  assertEquals(res.status, 200, `${what}: ${new TextDecoder().decode(res.bytes.slice(0, 300))}`);
  const size = imageSize(res.bytes);
  assert(size, `${what}: the body is not a PNG, JPEG, GIF or WebP image`);
  assertEquals(res.headers.get("content-type")?.split(";")[0], `image/${size.format}`, what);
  return size;
}

Deno.test({
  name: "js-sdk media: upload and send an image and an avatar; another user downloads both " +
    "and thumbnails through the authenticated endpoints",
  fn: async () => {
    quietGlobalSdkLogger();
    const server = await startServerProcess();
    const failures: string[] = [];
    const clients: sdk.MatrixClient[] = [];
    let passed = false;
    try {
      const alice = await step("alice signs in", () => signIn(server, failures, clients, "alice"));
      const bob = await step("bob signs in", () => signIn(server, failures, clients, "bob"));

      // The authenticated config says how large an upload may be (the default 50 MiB).
      const config = await step("media config", () => alice.client.getMediaConfig(true));
      assertEquals(config["m.upload.size"], 52_428_800);

      await step("alice's first sync", () => startSyncing(alice.client, alice.userId, 20));
      await step("bob's first sync", () => startSyncing(bob.client, bob.userId, 20));
      const { room_id: roomId } = await step(
        "createRoom",
        () => alice.client.createRoom({ preset: sdk.Preset.PrivateChat, invite: [bob.userId] }),
      );
      await waitUntil(
        "bob to see the invite",
        () => bob.client.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
      );
      await step("bob joins", () => bob.client.joinRoom(roomId));

      // (1) Alice uploads a 640x480 PNG and sends it as an image.
      const png = await pngImage(640, 480);
      const upload = await step(
        "uploadContent",
        () =>
          alice.client.uploadContent(new Blob([png as BlobPart], { type: "image/png" }), {
            name: "gradient.png",
            type: "image/png",
          }),
      );
      assert(
        upload.content_uri.startsWith(`mxc://${server.serverName}/`),
        `content_uri ${upload.content_uri}`,
      );
      const { event_id } = await step(
        "send the image",
        () =>
          alice.client.sendImageMessage(roomId, upload.content_uri, {
            mimetype: "image/png",
            size: png.length,
            w: 640,
            h: 480,
          }, "gradient.png"),
      );

      // (2) And makes a second upload her avatar.
      const avatarPng = await pngImage(200, 200);
      const avatar = await step(
        "upload the avatar",
        () =>
          alice.client.uploadContent(new Blob([avatarPng as BlobPart], { type: "image/png" }), {
            name: "avatar.png",
            type: "image/png",
          }),
      );
      await step("setAvatarUrl", () => alice.client.setAvatarUrl(avatar.content_uri));

      // (3) Bob gets the event through sync and downloads the image with his token.
      const event = await waitUntil(
        "bob to receive the image",
        () => bob.client.getRoom(roomId)?.findEventById(event_id),
      );
      const mxc = event.getContent().url as string;
      assertEquals(mxc, upload.content_uri);
      const downloadUrl = bob.client.mxcUrlToHttp(
        mxc,
        undefined,
        undefined,
        undefined,
        false,
        true,
        true,
      );
      assert(downloadUrl, "mxcUrlToHttp gave no URL");
      assert(
        new URL(downloadUrl).pathname.startsWith("/_matrix/client/v1/media/download/"),
        downloadUrl,
      );
      const download = await get(downloadUrl, bob.token);
      assertEquals(download.status, 200, new TextDecoder().decode(download.bytes.slice(0, 300)));
      assertEquals(download.bytes, png, "the downloaded bytes differ from the upload");
      assertEquals(download.headers.get("content-type"), "image/png");
      const disposition = download.headers.get("content-disposition") ?? "";
      assert(disposition.startsWith("inline"), `content-disposition: ${disposition}`);
      assert(disposition.includes("gradient.png"), `content-disposition: ${disposition}`);
      assertEquals(download.headers.get("x-content-type-options"), "nosniff");
      assert(
        download.headers.get("content-security-policy")?.includes("sandbox"),
        `content-security-policy: ${download.headers.get("content-security-policy")}`,
      );

      // With a file name after the media ID, the same bytes under the name the client asked for.
      const named = new URL(downloadUrl);
      named.pathname += "/holiday%20photo.png";
      const renamed = await get(named.href, bob.token);
      assertEquals(renamed.status, 200);
      assertEquals(renamed.bytes, png);
      const renamedDisposition = renamed.headers.get("content-disposition") ?? "";
      assert(
        renamedDisposition.includes("holiday%20photo.png") ||
          renamedDisposition.includes('"holiday photo.png"'),
        `content-disposition: ${renamedDisposition}`,
      );

      // The same URL without a token is refused: these reads are authenticated.
      const anonymous = await get(downloadUrl);
      assertEquals(anonymous.status, 401);
      assertEquals(errcodeOf(anonymous.bytes), "M_MISSING_TOKEN");

      // (4) Thumbnails: crop to a square, and scale keeping the 4:3 shape.
      const cropUrl = bob.client.mxcUrlToHttp(mxc, 96, 96, "crop", false, true, true)!;
      assert(new URL(cropUrl).pathname.startsWith("/_matrix/client/v1/media/thumbnail/"), cropUrl);
      const crop = thumbnailSize(await get(cropUrl, bob.token), "96x96 crop");
      assertEquals([crop.width, crop.height], [96, 96], "crop thumbnail size");
      const scaleUrl = bob.client.mxcUrlToHttp(mxc, 320, 240, "scale", false, true, true)!;
      const scaled = await get(scaleUrl, bob.token);
      const scale = thumbnailSize(scaled, "320x240 scale");
      assertEquals([scale.width, scale.height], [320, 240], "scale thumbnail size");
      // Asked again, the stored thumbnail comes back, byte for byte.
      assertEquals((await get(scaleUrl, bob.token)).bytes, scaled.bytes, "thumbnail differs");

      // (5) Bob sees Alice's new avatar on her membership and fetches it as clients draw it.
      const avatarMxc = await waitUntil(
        "bob to see alice's avatar",
        () => bob.client.getRoom(roomId)?.getMember(alice.userId)?.getMxcAvatarUrl(),
      );
      assertEquals(avatarMxc, avatar.content_uri);
      const avatarUrl = bob.client.mxcUrlToHttp(avatarMxc, 32, 32, "crop", false, true, true)!;
      const avatarThumb = thumbnailSize(await get(avatarUrl, bob.token), "avatar 32x32 crop");
      assertEquals([avatarThumb.width, avatarThumb.height], [32, 32]);

      // (6) Media that does not exist is M_NOT_FOUND, through the same SDK-built URL.
      const missing = bob.client.mxcUrlToHttp(
        `mxc://${server.serverName}/AAAAAAAAAAAAAAAAAAAAAAAA`,
        undefined,
        undefined,
        undefined,
        false,
        true,
        true,
      )!;
      const notFound = await get(missing, bob.token);
      assertEquals(notFound.status, 404);
      assertEquals(errcodeOf(notFound.bytes), "M_NOT_FOUND");
      passed = true;
    } finally {
      for (const client of clients) client.stopClient();
      if (!passed) {
        console.error("requests answered with an error status:\n  " + failures.join("\n  "));
        console.error("server output:\n" + server.output());
      }
      await server.stop();
    }
  },
});
