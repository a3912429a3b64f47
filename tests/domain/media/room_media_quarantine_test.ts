/** Finding the media an event's content points at, for the room quarantine. */
import { assertEquals } from "../../assert.ts";
import { mxcUrisIn } from "../../../domain/media/room_media_quarantine.ts";

Deno.test("mxcUrisIn: every mxc URI in nested content, once each, and nothing malformed", () => {
  const content = {
    url: "mxc://a.test/one",
    info: { thumbnail_url: "mxc://a.test/two", thumbnail_info: { w: 1 } },
    list: ["mxc://b.test:8448/three", "mxc://a.test/one", 5, null],
    bad: ["mxc://a.test/../x", "mxc://a.test/", "https://a.test/x", "mxc://a.test/x/y"],
  };
  assertEquals(mxcUrisIn(content).sort((x, y) => x.mediaId.localeCompare(y.mediaId)), [
    { server: "a.test", mediaId: "one" },
    { server: "b.test:8448", mediaId: "three" },
    { server: "a.test", mediaId: "two" },
  ]);
  assertEquals(mxcUrisIn(undefined), []);
});
