/** The media safety headers: dispositions by type, RFC 6266 file names, unsafe types. */
import { assertEquals } from "../../assert.ts";
import {
  contentDisposition,
  mediaHeaders,
  servedContentType,
} from "../../../routes/media/media_headers.ts";

Deno.test("media headers: inline only for the safe list, attachment otherwise", () => {
  assertEquals(contentDisposition("image/PNG; x=y"), "inline");
  assertEquals(contentDisposition("image/svg+xml", "a.svg"), "attachment; filename=a.svg");
  assertEquals(contentDisposition("text/html", "x.html"), "attachment; filename=x.html");
  assertEquals(contentDisposition("application/javascript"), "attachment");
  assertEquals(contentDisposition("video/mp4", "clip.mp4"), "inline; filename=clip.mp4");
});

Deno.test("media headers: names that are not tokens use filename* in UTF-8", () => {
  assertEquals(
    contentDisposition("text/plain", 'a "quoted"; name.txt'),
    "inline; filename*=utf-8''a%20%22quoted%22%3B%20name.txt",
  );
  assertEquals(
    contentDisposition("text/plain", "日本.txt"),
    "inline; filename*=utf-8''%E6%97%A5%E6%9C%AC.txt",
  );
  assertEquals(
    contentDisposition("text/plain", "it's(1)*"),
    "inline; filename*=utf-8''it%27s%281%29%2A",
  );
});

Deno.test("media headers: text gets UTF-8, unprintable types become octet-stream, CSP always", () => {
  assertEquals(servedContentType("text/plain"), "text/plain; charset=UTF-8");
  assertEquals(servedContentType("text/plain; charset=latin1"), "text/plain; charset=latin1");
  assertEquals(servedContentType("image/png"), "image/png");
  assertEquals(servedContentType("image/png\r\nSet-Cookie: x"), "application/octet-stream");
  assertEquals(servedContentType("imäge/png"), "application/octet-stream");
  const headers = mediaHeaders({ contentType: "text/html", size: 3 });
  assertEquals(headers.get("content-length"), "3");
  assertEquals(headers.get("x-content-type-options"), "nosniff");
  assertEquals(headers.get("cross-origin-resource-policy"), "cross-origin");
  assertEquals(headers.get("content-security-policy")?.startsWith("sandbox;"), true);
});
